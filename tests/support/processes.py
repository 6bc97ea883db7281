"""Process, port and log helpers shared by the tests (tests/conftest.py,
tests/daphne.py) and the benchmarks (bench/common.py).

Imports only the standard library and psutil, so bench/ can use it without pytest and
before Django is set up. What differs between the two users is a parameter: the
tests' `wait_for` raises AssertionError (a failed test), bench passes its
`BenchTimeout`; tests append to numbered logs per run, bench overwrites one log per
service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import psutil

# The repository root: where manage.py is, and the working directory of every subprocess.
ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


# --- ports ---------------------------------------------------------------------------


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it), for a server to bind."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --- waiting --------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
    *,
    error: type[Exception] = AssertionError,
) -> T:
    """Poll `predicate` until it returns something truthy and return that; raise
    `error` after `timeout` seconds. The predicate may raise to give up early."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


# --- processes ------------------------------------------------------------------------


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path = ROOT,
    append: bool = False,
) -> subprocess.Popen:
    """Start `argv` in a process group of its own (so `stop_process_group` reaches its
    children), stdout and stderr to `log_path`."""
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the leader, wait `grace`, then SIGKILL the group (qcluster can hang).

    Only the leader gets SIGTERM: django-q2's sentinel then stops its pusher, workers
    and monitor in order. Signalled all at once, the children inherit the leader's
    handler and the cluster typically hangs until the SIGKILL. Never raises for a
    process that is already gone, so a caller stopping several goes on to the next.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def descendants(proc: subprocess.Popen | None) -> list[psutil.Process]:
    """The live children of `proc`, recursively; [] once it has exited."""
    if proc is None or proc.poll() is not None:
        return []
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


# --- logs -----------------------------------------------------------------------------


def numbered_log_path(folder: Path, name: str) -> Path:
    """A fresh log file in `folder`, numbered in order of creation: 001-<name>.log, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.iterdir())) + 1
    return folder / f"{number:03d}-{name}.log"


def forget_dead_runs(folder: Path) -> None:
    """Delete the <pid> subfolders of `folder` whose process is gone (earlier runs' logs)."""
    for run in folder.iterdir() if folder.exists() else []:
        if run.name.isdigit() and not psutil.pid_exists(int(run.name)):
            shutil.rmtree(run, ignore_errors=True)


def read_log(path: Path) -> str:
    """The whole log, or "" when the process never wrote one."""
    return path.read_text(errors="replace") if path.exists() else ""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log, for an error message."""
    return "\n".join(read_log(path).splitlines()[-lines:])
