"""What handlers raise, and how the runner tells a transient failure from a permanent one.

Transient failures (network errors, HTTP 429/5xx, "database is locked") are retried
with exponential backoff and jitter; everything else fails the job with its message.
"""

from __future__ import annotations

import random

import httpx
from django.conf import settings

from jobs.engine.db import is_locked_error


class TransientError(Exception):
    """Raise from a handler to ask for a retry with backoff."""


class PermanentError(Exception):
    """Raise from a handler to fail the job at once with this message."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, TransientError | httpx.TransportError | ConnectionError | TimeoutError):
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
