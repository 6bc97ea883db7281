"""What operators do to a whole kind of work (a job kind, a Tasks queue `tasks.<queue>`,
or a sheet processor such as `llm`): list, pause, resume, set its concurrency cap.

Staff only, on every front end (the ops page, `/api/kinds/`, the admin, `conveyor kind`):
these act on every user's jobs. The engine keeps the holds (`jobs.engine.controls`); this
module checks who acts and dispatches the work a lifted hold or a raised cap frees.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from jobs.engine import controls, dispatch, services
from jobs.engine.errors import ControlError, JobActionError
from jobs.models import KindControl

MAY_NOT = "Only staff may pause, resume or cap kinds of work."


def may_control(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)


def _check(user: Any) -> None:
    if not may_control(user):
        raise JobActionError(MAY_NOT)


def kind_list() -> list[dict[str, Any]]:
    """Every kind and processor with its hold and cap (`controls.overview`)."""
    return controls.overview()


def kind_pause(name: Any, *, by: Any, reason: Any = "") -> KindControl:
    _check(by)
    row = controls.pause(name, by, reason)
    transaction.on_commit(services.park_held_jobs)
    return row


def kind_resume(name: Any, *, by: Any) -> KindControl:
    _check(by)
    row = controls.resume(name, by)
    transaction.on_commit(dispatch.dispatch)
    return row


def kind_cap(name: Any, cap: Any, *, by: Any) -> KindControl:
    _check(by)
    row = controls.set_cap(name, cap, by)
    transaction.on_commit(dispatch.dispatch)
    return row


def notices() -> list[str]:
    """What pages listing jobs say of the paused kinds ("llm paused by ops since 14:02
    UTC: provider degraded"): one query of the few paused rows, fresh (a page is read
    by a person, and a page's queries stay the same from one load to the next)."""
    return [controls.describe(row) for row in KindControl.objects.filter(paused_at__isnull=False)]


known_names = controls.known_names
MAX_CAP = controls.MAX_CAP

__all__ = [
    "MAX_CAP",
    "ControlError",
    "kind_cap",
    "kind_list",
    "kind_pause",
    "kind_resume",
    "known_names",
    "notices",
]
