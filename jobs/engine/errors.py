"""The engine's exceptions, in one place, and how the runner tells a transient failure
from a permanent one.

Handlers raise `TransientError` (retried with exponential backoff and jitter, like
network errors, HTTP 429/5xx and "database is locked"), `PermanentError` (the job
fails at once with its message), `Postponed` (wait, not a failure) or `PauseJob`. `checkpoint()` raises the `StopSlice` family to end a
slice; `LeaseLost` tells a worker that its job was recovered elsewhere. Front ends
catch `JobActionError` (an action that does not apply) and `UnknownKind`.
"""

from __future__ import annotations

import random
import sys

from django.conf import settings

from jobs.engine.db import is_locked_error


class TransientError(Exception):
    """Raise from a handler to ask for a retry with backoff."""


class PermanentError(Exception):
    """Raise from a handler to fail the job at once with this message."""


class Postponed(Exception):
    """Raise from a handler: the job cannot go on yet for a reason outside it (its API
    is down, a provider's batch is not done). It waits `delay` seconds without holding
    a worker, with `reason` as its message, then runs again from its last commit. Not a
    failure: no attempt is counted."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = max(0.0, float(delay))
        self.reason = reason


class PauseJob(Exception):
    """Raise from a handler: park the job as paused with `reason` as its message and
    the owner's notification (a budget reached); the owner's resume continues it from
    its last commit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopSlice(Exception):
    """Raised by `checkpoint()`: end this slice now; the runner decides what follows."""


class Cancelled(StopSlice):
    pass


class PauseRequested(StopSlice):
    pass


class Preempted(StopSlice):
    """The job was already released to a waiting higher-priority job."""


class SliceDone(StopSlice):
    pass


class TimeLimitExceeded(StopSlice):
    pass


class KindHeld(StopSlice):
    """An operator paused the job's kind or sub-kind, or capped it below the jobs
    running (`jobs.engine.controls`): park the job in the queue until the hold lifts."""

    def __init__(self, reason: str, hold: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hold = hold


class LeaseLost(Exception):
    """This worker no longer holds the job (it was presumed dead and recovered)."""


class JobActionError(Exception):
    """An action that does not apply to this job; the message is shown to the user."""


class AlreadyActive(JobActionError):
    """Nothing new was started: job `job_id`, still active, already does this work
    (`where`: "on sheet:12", "for schedule #3"). Front ends that deduplicate report it
    as such (the CLI's one rule: exit 3, or `"deduplicated": true` with --json)."""

    def __init__(self, message: str, *, job_id: int, where: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.where = where


class QuotaExceeded(JobActionError):
    """The owner has as many active jobs as allowed (CONVEYOR_MAX_ACTIVE_JOBS)."""


class InvalidChanges(ValueError):
    """Changes to a job that its kind refuses (a resume's new budget); `fields` maps each
    bad field to its message, shown to the user."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))
        self.fields = fields


class UnknownKind(LookupError):
    pass


class ControlError(ValueError):
    """An operator's kind control that cannot be applied as asked (an unknown name, a
    cap out of range); the message starts with the field's name, for the user."""


class ScheduleError(ValueError):
    """A schedule that cannot be created or changed as asked; `fields` maps each bad
    field (cron, every, timezone, ...) to its message, shown to the user."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    # httpx errors count only if httpx was imported (by a handler that raised them):
    # importing it here would put ~20 MB into every process of a cluster.
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return is_locked_error(exc)
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code == 429 or code >= 500
    return is_locked_error(exc)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: about base * 2^(attempt-1), capped."""
    base = settings.CONVEYOR_RETRY_BASE_SECONDS
    ceiling = min(settings.CONVEYOR_RETRY_MAX_SECONDS, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, PermanentError | TransientError) and text:
        return text
    return f"{name}: {text}" if text else name
