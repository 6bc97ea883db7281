"""jobs/engine/errors.py: the backoff between attempts after a transient error (the
runner's retries themselves: test_runner.py)."""

from __future__ import annotations

from jobs.engine.errors import backoff_seconds


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(settings):
    settings.CONVEYOR_RETRY_BASE_SECONDS = 1.0
    settings.CONVEYOR_RETRY_MAX_SECONDS = 10.0
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 10)]:
        samples = [backoff_seconds(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
