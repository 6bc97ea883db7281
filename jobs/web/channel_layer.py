"""The in-process channel layer the live relay fans out through.

Channels' InMemoryChannelLayer walks every channel and group membership on every send
and receive to expire old entries, so with hundreds of open pages its cost grows
with the square of their number; it also drops group memberships after a day, which
would silence a page left open. This layer cleans up at most once a second and keeps
memberships for as long as the websocket lives.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer

CLEAN_EVERY_SECONDS = 1.0
A_YEAR = 365 * 24 * 3600


class RelayChannelLayer(InMemoryChannelLayer):
    def __init__(self, group_expiry: int = A_YEAR, **kwargs) -> None:
        super().__init__(group_expiry=group_expiry, **kwargs)
        self._cleaned_at = 0.0

    def has_members(self, group: str) -> bool:
        """Whether a consumer of this process is in the group (the relay's toasts to a
        user's group: was a page of theirs open?)."""
        return bool(self.groups.get(group))

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY_SECONDS:
            self._cleaned_at = now
            super()._clean_expired()
