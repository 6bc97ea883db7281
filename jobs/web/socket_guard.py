"""Who may keep a live socket open: at most CONVEYOR_MAX_SOCKETS_PER_USER per user and
web process, none past its login, and none with rights its user has lost.

One task per web process checks every open socket every SESSION_CHECK_SECONDS, in two
queries (sessions, users). A socket is closed (CLOSE_LOGGED_OUT) when its session was
logged out (deleted) or has expired, or when Django would no longer log the session in:
its user was deactivated or deleted, or their password changed (the session's auth
hash no longer matches, as `django.contrib.auth.get_user` checks on every request). A
socket whose user gained or lost staff status is told (`rights_changed`): it leaves
the groups the user may no longer see (everyone's rows, other users' jobs and batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone
from django.utils.crypto import constant_time_compare

log = logging.getLogger(__name__)

SESSION_CHECK_SECONDS = 2.0
CLOSE_LOGGED_OUT = 4401
CLOSE_TOO_MANY = 4429


class Guarded(Protocol):
    user_id: int
    session_key: str
    is_staff: bool  # as the socket's groups were chosen; the guard updates it

    async def close(self, code: int | None = None, reason: str | None = None) -> Any: ...

    async def rights_changed(self) -> None: ...


class SocketGuard:
    def __init__(self) -> None:
        self.sockets: set[Guarded] = set()
        self._task: asyncio.Task | None = None

    def admit(self, socket: Guarded) -> bool:
        """Register a socket; False if its user already has as many as allowed."""
        limit = settings.CONVEYOR_MAX_SOCKETS_PER_USER
        open_ = sum(1 for other in self.sockets if other.user_id == socket.user_id)
        if limit and open_ >= limit:
            return False
        self.sockets.add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())
        return True

    def leave(self, socket: Guarded) -> None:
        self.sockets.discard(socket)

    async def _watch(self) -> None:
        while self.sockets:
            await asyncio.sleep(SESSION_CHECK_SECONDS)
            with contextlib.suppress(Exception):  # a database hiccup: try again next time
                await self.close_logged_out()

    async def close_logged_out(self) -> None:
        """Close the sockets whose login has ended; tell those whose staff status changed."""
        sockets = list(self.sockets)
        keys = {socket.session_key for socket in sockets}
        logins = await database_sync_to_async(_logins)(keys)
        for socket in sockets:
            login = logins.get(socket.session_key)
            if login is None or login[0] != socket.user_id:
                self.sockets.discard(socket)
                await socket.close(code=CLOSE_LOGGED_OUT)
            elif login[1] != socket.is_staff:
                try:
                    await socket.rights_changed()
                except ChannelFull:  # behind on its messages: told again at the next look
                    log.warning("socket of user %s: rights change not delivered", socket.user_id)
                    continue
                socket.is_staff = login[1]


def _logins(keys: set[str]) -> dict[str, tuple[int, bool]]:
    """`session key -> (user id, is_staff)` of the sessions that still log a user in."""
    sessions = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    data = {session.session_key: session.get_decoded() for session in sessions}
    ids = {value.get(SESSION_KEY) for value in data.values()}
    users = get_user_model()._default_manager.filter(pk__in=[i for i in ids if i is not None])
    by_id = {str(user.pk): user for user in users}
    logins = {}
    for key, value in data.items():
        user = by_id.get(str(value.get(SESSION_KEY)))
        if user is not None and _logs_in(value, user):
            logins[key] = (user.pk, user.is_staff)
    return logins


def _logs_in(session: dict[str, Any], user: Any) -> bool:
    """What `django.contrib.auth.get_user` requires of a session and its user: a
    configured backend, an active user, and the auth hash of the user's current
    password (or of a fallback secret key)."""
    if session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return False
    if not getattr(user, "is_active", True):
        return False
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, value) for value in hashes)


guard = SocketGuard()
