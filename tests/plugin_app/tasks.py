"""Django Tasks from an app of their own, run by Conveyor through `jobs.tasks_backend`
(tests/jobs/test_tasks_backend.py, tests/reliability/test_task_edges.py): plain,
failing, async, tasks that take a context and report progress, and tasks at the edges
(that exit, sleep past their limit, never reach a checkpoint, fail transiently). Workers
import them by their dotted path. Tasks with side effects note each run in a file."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from jobs.tasks_backend import retries
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


def _note(path: str, line: str) -> None:
    """Append a line to `path`: a side effect the tests count (one per run)."""
    with Path(path).open("a") as file:
        file.write(line + "\n")


@task
def note_then_sleep(path: str, seconds: float) -> float:
    """Notes each run, then sleeps without a checkpoint (a plain, non-cooperative task)."""
    _note(path, "ran")
    time.sleep(seconds)
    return seconds


@task
def note_then_exit(path: str, code: int = 3) -> None:
    """Notes each run, then raises SystemExit (as `sys.exit(code)` does)."""
    _note(path, "ran")
    raise SystemExit(code)


@task
@retries(1)
def note_then_sleep_retried(path: str, seconds: float) -> float:
    """`note_then_sleep`, opted into one retry."""
    _note(path, "ran")
    time.sleep(seconds)
    return seconds


@task
def note_and_wait_for(path: str, flag: str) -> str:
    """Notes each run, then waits (never reaching a checkpoint) until `flag` exists."""
    _note(path, "ran")
    while not Path(flag).exists():
        time.sleep(0.05)
    return "flagged"


@task
def raise_base_exception(name: str) -> None:
    """Raises a BaseException that is not an Exception, by name."""
    raise {
        "KeyboardInterrupt": KeyboardInterrupt,
        "GeneratorExit": GeneratorExit,
        "CancelledError": asyncio.CancelledError,
    }[name]()


@task
def interrupt_own_process() -> None:
    """A real Ctrl-C of the process running the task (SIGINT to itself)."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)


@task
def fail_once_with_connection_error(path: str) -> str:
    """Notes each run; the first run fails with a ConnectionError (a transient error)."""
    runs = Path(path).read_text().count("ran") if Path(path).exists() else 0
    _note(path, "ran")
    if runs == 0:
        raise ConnectionError("the first run fails")
    return "second run"


@task
@retries(2)
def fail_once_with_connection_error_retried(path: str) -> str:
    """`fail_once_with_connection_error`, opted into two retries."""
    return fail_once_with_connection_error.func(path)
