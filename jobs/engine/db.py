"""Database helpers shared by the engine: one lock for scheduling decisions, and
retrying a whole transaction when SQLite reports "database is locked".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

T = TypeVar("T")

# Arbitrary constant naming Conveyor's advisory lock on PostgreSQL.
SCHEDULER_LOCK_ID = 7_216_013


def lock_scheduler() -> None:
    """Serialise dispatch and claims for the current transaction.

    SQLite already serialises writers (IMMEDIATE transactions); on PostgreSQL a
    transaction-level advisory lock keeps two dispatchers from both filling the
    same free capacity.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULER_LOCK_ID])


def is_locked_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


def atomic_retry(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run `fn` in a transaction, redoing the whole transaction if SQLite is locked."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return fn()
        except OperationalError as exc:
            if not is_locked_error(exc) or attempt == attempts:
                raise
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    raise AssertionError("unreachable")
