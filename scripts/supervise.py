"""`make run`'s supervisor: start every process of the Procfile, restart the one that dies.

honcho stopped everything when one process exited (a crashed web server took the
workers down). Here a dead process is restarted after an exponential backoff (1 s,
doubling, capped at 10 s, back to 1 s once it stayed up 30 s) while the others keep
running. Ctrl-C or SIGTERM stops everything within 10 s: SIGTERM to each process,
up to 8 s of grace, then SIGKILL to each process group. Each child runs in its own
session and process group, so the terminal's Ctrl-C reaches only this supervisor, and
a child's leftover processes (a killed qcluster's workers) are killed with it before
it starts again. The SIGTERM goes to the group leader only: qcluster's leader stops
its cluster in order, but its sentinel process keeps SIGTERM's default action, so a
SIGTERM to the whole group kills the sentinel and leaves the leader hanging.
If the supervisor itself is killed (kill -9, OOM killer), Linux sends each leader
SIGTERM (PR_SET_PDEATHSIG): no orphaned web server keeps the port from the next
`make run`, no orphaned cluster runs beside the next one.

State file, for a metrics page: CONVEYOR_DATA_DIR/supervisor.json (default
./var/supervisor.json), rewritten atomically at every start and exit of a process:

    {"web": {"pid": 1234, "restarts": 2, "last_exit": -9,
             "started_at": "2026-11-23T10:00:00+00:00"}, "worker": {...}}

`restarts` counts restarts since the supervisor started; `last_exit` is the last exit
code (negative: killed by that signal; null: never exited); `started_at` is when the
current process started (UTC, ISO 8601); `pid` is its pid (null while waiting to
restart).

Usage: python scripts/supervise.py [--procfile Procfile] [--state FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0
STOP_GRACE = 8.0
TICK = 0.2


def log(message: str) -> None:
    """A line of the supervisor's own: JSON like every other with LOG_FORMAT=json (the
    children share this output)."""
    if os.environ.get("LOG_FORMAT") == "json":
        line = {
            "time": datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3],
            "level": "INFO",
            "logger": "supervise",
            "process": os.getpid(),
            "message": message,
        }
        print(json.dumps(line), flush=True)
        return
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"{stamp} supervise | {message}", flush=True)


def read_procfile(path: Path) -> dict[str, str]:
    """`name: command` lines; blank lines and `#` comments skipped."""
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not command.strip():
            raise SystemExit(f"{path}: not a `name: command` line: {line!r}")
        commands[name.strip()] = command.strip()
    return commands


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_supervisor() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (kept across exec).
    Elsewhere than Linux there is no such call and a killed supervisor leaves orphans."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def backoff(failures: int) -> float:
    """Seconds to wait before restart number `failures` of an unstable process."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1))


@dataclass
class Child:
    name: str
    command: str
    proc: subprocess.Popen | None = None
    started: float = 0.0
    started_at: str = ""
    restarts: int = 0
    failures: int = 0
    last_exit: int | None = None
    restart_at: float | None = field(default=None)

    def start(self) -> None:
        # A shell expands the Procfile's ${VAR:-default}; exec keeps the pid the program's.
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {self.command}"],
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_stop_with_supervisor,
        )
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.restart_at = None
        log(f"{self.name} started (pid {self.proc.pid}): {self.command}")

    def exited(self) -> bool:
        """Has the leader exited? Checked without reaping it: an unreaped leader keeps
        its pid, and so its process group id, from being reused."""
        if self.proc is None:
            return False
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def terminate(self) -> None:
        # os.kill, not Popen.terminate(): that would reap the leader (see exited()).
        if self.proc is not None and not self.exited():
            os.kill(self.proc.pid, signal.SIGTERM)

    def signal_group(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def reap(self) -> int:
        """Kill what is left of the group, then collect the leader's exit code."""
        assert self.proc is not None
        self.signal_group(signal.SIGKILL)
        code = self.proc.wait()
        self.proc = None
        self.last_exit = code
        return code

    def state(self) -> dict:
        return {
            "pid": self.proc.pid if self.proc else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "started_at": self.started_at,
        }


class Supervisor:
    def __init__(self, commands: dict[str, str], state_path: Path) -> None:
        self.children = [Child(name, command) for name, command in commands.items()]
        self.state_path = state_path
        self.stopping = threading.Event()

    def write_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({c.name: c.state() for c in self.children}, indent=2))
        os.replace(tmp, self.state_path)

    def request_stop(self, signum: int, frame: object) -> None:
        self.stopping.set()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        for child in self.children:
            child.start()
        self.write_state()
        while not self.stopping.wait(TICK):
            self.tend()
        self.stop_all()
        return 0

    def tend(self) -> None:
        """Notice exits, schedule restarts, start what is due."""
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.proc is not None and child.exited():
                self.schedule_restart(child, now)
                changed = True
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start()
                changed = True
        if changed:
            self.write_state()

    def schedule_restart(self, child: Child, now: float) -> None:
        stable = now - child.started >= STABLE_AFTER
        child.failures = 1 if stable else child.failures + 1
        code = child.reap()
        delay = backoff(child.failures)
        child.restart_at = now + delay
        log(f"{child.name} exited with code {code}; restarting in {delay:g} s")

    def stop_all(self) -> None:
        """SIGTERM every child, wait for them up to the grace, SIGKILL their groups."""
        running = [c for c in self.children if c.proc is not None]
        log(f"stopping {', '.join(c.name for c in running) or 'nothing'}")
        for child in running:
            child.terminate()
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and not all(c.exited() for c in running):
            time.sleep(0.05)
        for child in running:
            if not child.exited():
                log(f"{child.name} did not stop within {STOP_GRACE:g} s; killing it")
            child.reap()
            child.restart_at = None
        self.write_state()
        log("stopped")


def main(argv: list[str] | None = None) -> int:
    data_dir = Path(os.environ.get("CONVEYOR_DATA_DIR") or ROOT / "var")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument("--state", type=Path, default=data_dir / "supervisor.json")
    args = parser.parse_args(argv)
    return Supervisor(read_procfile(args.procfile), args.state).run()


if __name__ == "__main__":
    sys.exit(main())
