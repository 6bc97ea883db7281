"""State shared by every worker process through the database, changed in one
transaction at a time: what Redis gives a deployment that has it, for one that has not.

The processors pace their requests with it (sheets/processors/pacing.py): a schedule
and a breaker per API endpoint, read and changed by every job on every worker. A change
is a pure function `op(state, now, *args)` applied to the stored dict; when it leaves
the state as it was (most breaker checks), no write and no lock is taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connection
from django.utils import timezone

from jobs.engine.db import atomic_retry
from jobs.models import SharedState

KEEP = timedelta(days=1)  # a state nobody changed for this long is pruned


def apply_shared_state(key: str, op: Callable[..., Any], *args: Any) -> Any:
    """`op(state, now, *args)` on the state stored under `key`; what `op` returns.

    Read first without a lock: an `op` that changes nothing returns at once. Otherwise
    the row is locked (SELECT ... FOR UPDATE; SQLite's IMMEDIATE transactions) and `op`
    runs again on what is stored then, so two workers never take the same slot.
    """
    try:
        stored = SharedState.objects.filter(key=key).values_list("state", flat=True).first()
        state = dict(stored or {})
        result = op(state, time.time(), *args)
        if state == (stored or {}):
            return result
        return atomic_retry(lambda: _change(key, op, args, create=stored is None))
    except DatabaseError:
        connection.close()  # a broken connection is opened afresh by the next call
        raise


def _change(key: str, op: Callable[..., Any], args: tuple, *, create: bool) -> Any:
    if create:  # another worker may create it at the same time
        SharedState.objects.bulk_create([SharedState(key=key)], ignore_conflicts=True)
    row = SharedState.objects.select_for_update().get(key=key)
    state = dict(row.state)
    result = op(state, time.time(), *args)
    if state != row.state:
        SharedState.objects.filter(key=key).update(state=state, updated_at=timezone.now())
    return result


def prune_shared_state() -> int:
    deleted, _ = SharedState.objects.filter(updated_at__lt=timezone.now() - KEEP).delete()
    return deleted
