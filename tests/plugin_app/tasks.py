"""Django Tasks from an app of their own, run by Conveyor through `jobs.tasks_backend`
(tests/jobs/test_tasks_backend.py): plain, failing, async, and tasks that take a context
and report progress. Workers import them by their dotted path."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from jobs.tasks_compat import task


class TaskBoom(Exception):
    """What the failing tasks raise."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args, **kwargs) -> dict:
    return {"args": list(args), "kwargs": kwargs}


@task
def explode(message: str) -> None:
    raise TaskBoom(message)


@task
def fail_unless_exists(path: str) -> str:
    """Fails until the file exists: a task that a retry can mend."""
    if not Path(path).exists():
        raise TaskBoom(f"{path} is missing")
    return "found"


@task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def not_json() -> object:
    return {1, 2}


@task(takes_context=True)
def count_slowly(context, n: int, delay: float = 0.0) -> dict:
    """Counts to n, reporting each step; stops at a checkpoint when cancelled or paused."""
    for done in range(1, n + 1):
        time.sleep(delay)
        context.progress(done, n, f"Counted {done} of {n}")
    return {"counted": n, "attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True)
async def async_count(context, n: int) -> int:
    for done in range(1, n + 1):
        await asyncio.sleep(0)
        await context.aprogress(done, n, f"Counted {done} of {n}")
    return n


def not_a_task() -> None:
    """A plain function: a worker refuses to run it by path."""
