"""Operators' holds on whole kinds of work: pause a job kind, a Tasks queue (its kind,
`tasks.<queue>`) or a sub-kind (a sheet processor such as `llm`) on every cluster, and
cap how many of its jobs run at once, at run time.

`KindControl` rows are the truth, so a hold survives restarts and reaches every cluster
through the database. Nothing new starts once a pause commits: dispatch and the claim
exclude paused work in their own statements (`Job.objects.claimable()`). A running job
learns of a pause, or of a cap lowered below the jobs running, at its next checkpoint
(`hold_on`), from a read of the controls cached for at most CACHE_SECONDS per process;
dispatch reads the caps (`caps()`) the same way. A parked job goes back to the queue
(not "paused": it is not its owner's to resume) and runs again once the hold is lifted.
Front ends change controls through `jobs.actions.kinds`, which also dispatches the work a
lifted hold frees.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.engine.errors import ControlError
from jobs.engine.journal import Journal
from jobs.engine.kinds import all_kinds, capped_kinds, subkind_names
from jobs.models import Job, JobEvent, KindControl

CACHE_SECONDS = 1.0
MAX_CAP = 10_000
HOLD = "hold"  # the key, in a parked job's event data, of the name that held it
RESUMED_EVENTS = 1000  # at most this many parked jobs get a "resumed" line each

_lock = threading.Lock()
_cache: dict[str, Any] = {"read_at": -float("inf"), "rows": {}}


def _controls() -> dict[str, KindControl]:
    """Every control row by name, read at most once per CACHE_SECONDS in this process
    (a handful of rows: every worker's checkpoints and dispatches share the read)."""
    now = time.monotonic()
    with _lock:
        if now - _cache["read_at"] < CACHE_SECONDS:
            return _cache["rows"]
    rows = {row.name: row for row in KindControl.objects.all()}
    with _lock:
        _cache.update(read_at=now, rows=rows)
    return rows


def forget() -> None:
    """Drop the cached read (after this process changed a control, and in tests)."""
    with _lock:
        _cache.update(read_at=-float("inf"), rows={})


def paused() -> dict[str, KindControl]:
    """The paused controls by name (cached)."""
    return {name: row for name, row in _controls().items() if row.is_paused}


def default_caps() -> dict[str, int]:
    """Caps before any operator's: the kinds' own (a Tasks queue's from its settings),
    then CONVEYOR_KIND_CAPS."""
    return {**capped_kinds(), **settings.CONVEYOR_KIND_CAPS}


def caps() -> dict[str, int]:
    """The concurrency cap of every capped kind or sub-kind: its default
    (`default_caps`) unless an operator set one."""
    found = default_caps()
    found.update({name: row.cap for name, row in _controls().items() if row.cap})
    return found


def describe(row: KindControl) -> str:
    """ "llm paused by ops since 14:02 UTC: provider degraded" """
    since = timezone.localtime(row.paused_at).strftime("%H:%M %Z").strip()
    who = f" by {row.paused_by}" if row.paused_by else ""
    why = f": {row.reason}" if row.reason else ""
    return f"{row.name} paused{who} since {since}{why}"


def hold_on(job_id: int, kind: str, subkind: str) -> tuple[str, str] | None:
    """Why a running job of `kind`/`subkind` should park now, with the name holding it:
    its kind or sub-kind is paused, or more of its jobs run than a cap allows (the
    jobs claimed last give way: those with a higher id). None: it goes on.

    A hold seen in the cached read is read again before the job parks: the cache may
    predate a resume that let this very job be claimed."""
    if _hold_on(job_id, kind, subkind) is None:
        return None
    forget()
    return _hold_on(job_id, kind, subkind)


def _hold_on(job_id: int, kind: str, subkind: str) -> tuple[str, str] | None:
    held = paused()
    for name in (kind, subkind):
        if name and name in held:
            return describe(held[name]), name
    limits = caps()
    for field, name in (("kind", kind), ("subkind", subkind)):
        cap = limits.get(name) if name else None
        if cap is None:
            continue
        ahead = Job.objects.filter(
            **{field: name}, status=Job.Status.RUNNING, id__lt=job_id
        ).exclude(lease_owner="")
        if ahead.count() >= cap:
            return f"{name} is capped at {cap} running at once", name
    return None


# -- operators' writes ---------------------------------------------------------------------


def known_names() -> dict[str, str]:
    """Every name that may be held: kinds ("kind") and sub-kinds (their kind's name)."""
    names = {kind.name: "kind" for kind in all_kinds()}
    for name, kind in subkind_names().items():
        names.setdefault(name, kind)
    return names


def _name(name: Any) -> str:
    text = str(name or "").strip()
    if not text:
        raise ControlError("name: give a job kind, a Tasks queue (tasks.<queue>) or a processor")
    if text not in known_names() and not KindControl.objects.filter(name=text).exists():
        known = ", ".join(sorted(known_names()))
        raise ControlError(f"name: unknown kind, queue or processor {text!r}. Known: {known}")
    return text


def _who(user: Any) -> str:
    return user.get_username() if user is not None else ""


def pause(name: Any, who: Any = None, reason: Any = "") -> KindControl:
    """Pause every job of `name` on every cluster: queued ones wait, new ones are
    accepted and wait, running ones park at their next checkpoint."""
    name = _name(name)
    reason = str(reason or "").strip()
    if len(reason) > 500:
        raise ControlError("reason: at most 500 characters")
    now = timezone.now()
    with transaction.atomic():
        row, _ = KindControl.objects.select_for_update().get_or_create(name=name)
        if not row.is_paused:
            row.paused_at = now
        row.paused_by, row.reason = _who(who), reason
        row.updated_at, row.updated_by = now, _who(who)
        row.save()
    forget()
    return row


def resume(name: Any, who: Any = None) -> KindControl:
    """Lift a pause: the jobs it held run again, each parked one with a timeline line
    saying who resumed it."""
    name = _name(name)
    now = timezone.now()
    with transaction.atomic():
        row, _ = KindControl.objects.select_for_update().get_or_create(name=name)
        since = row.paused_at
        row.paused_at, row.paused_by, row.reason = None, "", ""
        row.updated_at, row.updated_by = now, _who(who)
        row.save()
        if since is not None:
            _note_resumed(name, since, who)
    forget()
    return row


def _note_resumed(name: str, since, who: Any) -> None:
    parked = (
        JobEvent.objects.filter(at__gte=since, data__hold=name, job__status__in=Job.ACTIVE)
        .order_by("-id")
        .values_list("job_id", flat=True)[:RESUMED_EVENTS]
    )
    by = f" by {_who(who)}" if who is not None else ""
    journal = Journal()
    for job_id in sorted(set(parked)):
        journal.event(job_id, JobEvent.Kind.LOG, f"{name} resumed{by}")
        journal.changed(job_id)
    journal.flush()


def set_cap(name: Any, cap: Any, who: Any = None) -> KindControl:
    """Cap `name` at `cap` running jobs on all clusters (None: back to the default),
    honoured by dispatch and checkpoints within seconds."""
    name = _name(name)
    if cap in (None, ""):
        value = None
    else:
        if isinstance(cap, bool):
            raise ControlError(f"cap: a whole number from 1 to {MAX_CAP}, or empty")
        try:
            value = int(cap)
        except (TypeError, ValueError):
            raise ControlError(f"cap: a whole number from 1 to {MAX_CAP}, or empty") from None
        if not 1 <= value <= MAX_CAP:
            raise ControlError(f"cap: a whole number from 1 to {MAX_CAP}, or empty")
    with transaction.atomic():
        row, _ = KindControl.objects.select_for_update().get_or_create(name=name)
        row.cap, row.updated_at, row.updated_by = value, timezone.now(), _who(who)
        row.save()
    forget()
    return row


def overview() -> list[dict[str, Any]]:
    """Every known or controlled name with its hold and cap: what `kind list` shows."""
    rows = {row.name: row for row in KindControl.objects.all()}
    defaults = default_caps()
    names = known_names()
    listing = []
    for name in sorted(set(names) | set(rows)):
        row = rows.get(name)
        of = names.get(name, "")
        listing.append(
            {
                "name": name,
                "type": "kind" if of == "kind" else "processor" if of else "unknown",
                "kind": name if of == "kind" else of,
                "paused": bool(row and row.is_paused),
                "paused_at": row.paused_at if row else None,
                "paused_by": row.paused_by if row else "",
                "reason": row.reason if row else "",
                "cap": row.cap if row and row.cap else None,
                "default_cap": defaults.get(name),
                "notice": describe(row) if row and row.is_paused else "",
                "updated_at": row.updated_at if row else None,
                "updated_by": row.updated_by if row else "",
            }
        )
    return listing
