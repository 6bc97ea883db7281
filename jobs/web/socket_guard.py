"""Who may keep a live socket open: at most CONVEYOR_MAX_SOCKETS_PER_USER per user and
web process, and none past its login session.

One task per web process checks every open socket's session in a single query every
SESSION_CHECK_SECONDS: a socket whose session was logged out (deleted) or has expired
is closed, so a page left open after logout stops receiving the user's updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

log = logging.getLogger(__name__)

SESSION_CHECK_SECONDS = 2.0
CLOSE_LOGGED_OUT = 4401
CLOSE_TOO_MANY = 4429


class Guarded(Protocol):
    user_id: int
    session_key: str

    async def close(self, code: int | None = None, reason: str | None = None) -> Any: ...


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
        keys = {socket.session_key for socket in self.sockets}
        alive = await database_sync_to_async(_live_sessions)(keys)
        for socket in list(self.sockets):
            if socket.session_key not in alive:
                self.sockets.discard(socket)
                await socket.close(code=CLOSE_LOGGED_OUT)


def _live_sessions(keys: set[str]) -> set[str]:
    sessions = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    return set(sessions.values_list("session_key", flat=True))


guard = SocketGuard()
