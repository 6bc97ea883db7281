"""The websocket at /ws/live/: authenticated users subscribe to jobs they may see.

On connect (a logged-in session, within the user's socket limit: `socket_guard`, which
also closes the socket soon after logout, deactivation or a password change, and has
it leave what a demoted user may no longer see) the user joins their own group (badges,
toasts) and the subscriptions
named in the query string (`?job=12`, `?entity=sheet:3`, `?batch=4`, `?rows=1` for pages listing
the user's jobs, `?rows=all` for staff listing everyone's); each
subscription first gets a snapshot rendered from the database, then the relay's
fragments. Messages `{"action": "subscribe"|"unsubscribe", "job": 12}` (or
`"entity": "sheet:3"`) add or drop subscriptions; a bad or unauthorised one gets an
error frame and leaves the others alone. Frames are HTML for htmx's ws extension,
except error frames, which are JSON (htmx ignores them).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model

from jobs.models import Batch, Job
from jobs.web import live
from jobs.web.socket_guard import CLOSE_TOO_MANY, guard

CLOSE_UNAUTHENTICATED = 4401
MAX_MESSAGE_BYTES = 4096
MAX_SUBSCRIPTIONS = 50


class SubscriptionError(Exception):
    pass


class LiveConsumer(AsyncWebsocketConsumer):
    groups_joined: set[str]
    # group -> the subscription that joined it, re-checked when the user's rights change
    subscriptions: dict[str, dict[str, Any]]

    async def connect(self) -> None:
        self.groups_joined = set()
        self.subscriptions = {}
        user = self.scope.get("user")
        session = self.scope.get("session")
        if user is None or not user.is_authenticated or not getattr(session, "session_key", ""):
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.user_id = user.pk
        self.is_staff = user.is_staff
        self.session_key = session.session_key
        if not guard.admit(self):
            await self.accept()
            await self._error("too many live connections for this user; close some tabs")
            await self.close(code=CLOSE_TOO_MANY)
            return
        await live.relay.ensure_started()
        # The groups are joined before the socket opens: a page that sees it open gets
        # every toast and row pushed from then on (group messages wait for connect()).
        await self._join(live.user_group(user.pk))
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        if "rows" in query:
            all_rows = query["rows"] == ["all"] and user.is_staff
            await self._join(live.STAFF_ROWS_GROUP if all_rows else live.rows_group(user.pk))
        await self.accept()
        await self.send(text_data=await database_sync_to_async(live.render_badges)(user.pk))
        for value in query.get("job", []):
            await self._subscribe_or_report({"job": value})
        for value in query.get("entity", []):
            await self._subscribe_or_report({"entity": value})
        for value in query.get("batch", []):
            await self._subscribe_or_report({"batch": value})

    async def disconnect(self, code: int) -> None:
        guard.leave(self)
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = self._parse(text_data, bytes_data)
            action = message.get("action")
            if action == "subscribe":
                await self._subscribe(message)
            elif action == "unsubscribe":
                await self._unsubscribe(message)
            else:
                raise SubscriptionError("action must be 'subscribe' or 'unsubscribe'")
        except SubscriptionError as exc:
            await self._error(str(exc))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The relay's fragments need no database: skip Channels' per-message hop to a
        # thread to close old connections (a quarter of a busy web process's time).
        if message["type"] == "live.fragment":
            await self.live_fragment(message)
        else:
            await super().dispatch(message)

    async def live_fragment(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])

    async def rights_changed(self) -> None:
        """Called by the socket guard: re-check the subscriptions in this consumer's own
        turn (a message to itself), not alongside a subscribe being handled."""
        await self.channel_layer.send(self.channel_name, {"type": "live.rights"})

    async def live_rights(self, event: dict[str, Any]) -> None:
        """The user gained or lost staff status: later subscriptions follow the new
        rights, and the groups they may no longer see are left at once (a demoted user's
        list of everyone's rows becomes a list of their own)."""
        lost = await database_sync_to_async(self._reload_rights)()
        for group in lost:
            self.groups_joined.discard(group)
            self.subscriptions.pop(group, None)
            await self.channel_layer.group_discard(group, self.channel_name)
        if live.STAFF_ROWS_GROUP in lost:
            await self._join(live.rows_group(self.user_id))

    # -- helpers ---------------------------------------------------------------
    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        raw = text_data if text_data is not None else (bytes_data or b"").decode(errors="replace")
        if len(raw) > MAX_MESSAGE_BYTES:
            raise SubscriptionError("message too large")
        try:
            message = json.loads(raw)
        except ValueError:
            raise SubscriptionError("message must be JSON") from None
        if not isinstance(message, dict):
            raise SubscriptionError("message must be a JSON object")
        return message

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"error": message}))

    async def _subscribe_or_report(self, message: dict[str, Any]) -> None:
        try:
            await self._subscribe(message)
        except SubscriptionError as exc:
            await self._error(str(exc))

    async def _subscribe(self, message: dict[str, Any]) -> None:
        group, snapshot = await database_sync_to_async(self._resolve)(message)
        if len(self.groups_joined) >= MAX_SUBSCRIPTIONS:
            raise SubscriptionError("too many subscriptions")
        await self._join(group)
        self.subscriptions[group] = message
        if snapshot:
            await self.send(text_data=snapshot)

    async def _unsubscribe(self, message: dict[str, Any]) -> None:
        group, _ = await database_sync_to_async(self._resolve)(message, snapshot=False)
        if group in self.groups_joined:
            self.groups_joined.discard(group)
            self.subscriptions.pop(group, None)
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _join(self, group: str) -> None:
        self.groups_joined.add(group)
        await self.channel_layer.group_add(group, self.channel_name)

    def _reload_rights(self) -> set[str]:
        """Reload the user; the joined groups they may no longer see."""
        user = get_user_model()._default_manager.filter(pk=self.user_id).first()
        if user is None:  # deleted: the guard closes the socket on its next look
            return set(self.groups_joined)
        self.user = user
        lost = set()
        for group, message in self.subscriptions.items():
            try:
                self._resolve(message, snapshot=False)
            except SubscriptionError:
                lost.add(group)
        if live.STAFF_ROWS_GROUP in self.groups_joined and not user.is_staff:
            lost.add(live.STAFF_ROWS_GROUP)
        return lost

    def _resolve(self, message: dict[str, Any], snapshot: bool = True) -> tuple[str, str]:
        """The group for a subscription the user may have, and its current snapshot."""
        if "job" in message:
            job = self._visible(Job, message["job"])
            html = live.job_page_fragment(job) if snapshot else ""
            return live.job_group(job.pk), html
        if "entity" in message:
            key = message["entity"]
            if not isinstance(key, str) or not key or len(key) > 200:
                raise SubscriptionError("entity must be a non-empty string")
            jobs = Job.objects.filter(owner=self.user, entity_key=key)
            job = jobs.order_by("-created_at", "-id").first()
            html = live.entity_fragment(job) if job is not None and snapshot else ""
            return live.entity_group(self.user.pk, key), html
        if "batch" in message:
            batch = self._visible(Batch, message["batch"])
            html = live.batch_fragment(batch) if snapshot else ""
            return live.batch_group(batch.pk), html
        raise SubscriptionError("subscribe to a 'job' (id), an 'entity' (key) or a 'batch' (id)")

    def _visible(self, model: type[Job] | type[Batch], value: Any) -> Any:
        """The job or batch with this id if the user may see it (else "not found", as
        for one that does not exist)."""
        what = model._meta.model_name
        try:
            pk = int(value)
        except (TypeError, ValueError):
            raise SubscriptionError(f"{what} must be an integer id") from None
        found = model.objects.visible_to(self.user).filter(pk=pk).first()
        if found is None:
            raise SubscriptionError(f"{what} {pk} not found")
        return found
