"""`make run`'s supervisor (scripts/supervise.py) as a real process tree: a killed web
server or qcluster is restarted while the other keeps running, and Ctrl-C stops it all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobs.models import Worker
from tests.conftest import log_path, subprocess_env
from tests.daphne import NO_PROXY
from tests.jobs.factories import fresh, submit_demo
from tests.support.processes import ROOT, free_port, port_open, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


class Supervised:
    """`python scripts/supervise.py` on a free port and the test database."""

    def __init__(self, state_path: Path, **env: str) -> None:
        self.port = free_port()
        self.state_path = state_path
        self.log_path = log_path("supervise")
        venv_bin = str(Path(sys.executable).parent)  # the Procfile's `daphne` and `python`
        env = subprocess_env(
            CONVEYOR_PORT=str(self.port),
            CONVEYOR_WORKERS="2",
            PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
            **env,
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/supervise.py", "--state", str(state_path)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def pid(self, name: str) -> int | None:
        return self.state().get(name, {}).get("pid")

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the supervisor exited:\n{self.log()}")
        try:
            with NO_PROXY.open(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def tree(self) -> list[psutil.Process]:
        """The supervisor, its children and every process in their process groups."""
        procs = [psutil.Process(self.proc.pid)]
        procs += procs[0].children(recursive=True)
        groups = {p.pid for p in procs[0].children()}
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if os.getpgid(p.pid) in groups and p not in procs:
                    procs.append(p)
        return procs

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie waiting for its reaper counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def supervised(tmp_path) -> Iterator[Supervised]:
    sup = Supervised(tmp_path / "supervisor.json")
    yield sup
    leftovers = [] if sup.proc.poll() is not None else sup.tree()
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.kill()
    sup.proc.wait(timeout=10)


def cluster_workers(leader_pid: int) -> set[int]:
    """Pids of the qcluster's worker processes that report alive in the database."""
    try:
        mine = {p.pid for p in psutil.Process(leader_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()
    return mine & set(Worker.objects.alive().values_list("pid", flat=True))


def test_a_killed_process_is_restarted_alone_and_ctrl_c_stops_everything(supervised, user):
    wait_for(supervised.healthy, timeout=60, interval=0.2, what="/healthz 200 at start")
    web, worker = supervised.pid("web"), supervised.pid("worker")
    workers = wait_for(lambda: cluster_workers(worker), timeout=30, what="workers alive")
    worker_tree = [psutil.Process(worker), *psutil.Process(worker).children(recursive=True)]

    os.kill(web, signal.SIGKILL)
    wait_for(lambda: supervised.pid("web") not in (None, web), timeout=30, what="a new web")
    wait_for(supervised.healthy, timeout=30, interval=0.2, what="/healthz 200 after web kill")
    web_state = supervised.state()["web"]
    assert (web_state["restarts"], web_state["last_exit"]) == (1, -signal.SIGKILL)
    assert not any(gone(p) for p in worker_tree), "the workers kept running meanwhile"
    assert supervised.pid("worker") == worker

    os.kill(worker, signal.SIGKILL)
    wait_for(
        lambda: supervised.pid("worker") not in (None, worker), timeout=30, what="new qcluster"
    )
    new_worker = supervised.pid("worker")
    wait_for(lambda: cluster_workers(new_worker), timeout=30, what="the new cluster's workers")
    wait_for(supervised.healthy, timeout=30, interval=0.2, what="/healthz 200 after qcluster kill")
    assert all(gone(p) for p in worker_tree), f"the old cluster's workers {workers} were stopped"
    assert supervised.state()["worker"]["restarts"] == 1
    assert supervised.state()["web"]["restarts"] == 1

    busy = submit_demo(user, n=2000, batch=1, delay=0.05)  # Ctrl-C while a job runs
    wait_for(lambda: fresh(busy).processed > 0, timeout=30, what="the job to make progress")
    tree = supervised.tree()
    assert len(tree) >= 5, "supervisor, daphne, qcluster and its processes"
    supervised.proc.send_signal(signal.SIGINT)
    wait_for(lambda: all(gone(p) for p in tree), timeout=15, what="every process to stop")
    assert supervised.proc.wait(timeout=5) == 0
    assert all(entry["pid"] is None for entry in supervised.state().values())


def test_a_killed_supervisor_takes_its_processes_with_it(supervised):
    """kill -9 of the supervisor (or the OOM killer): the web server and the cluster stop
    too, instead of living on as orphans that hold the port and run beside the next
    `make run`."""
    wait_for(supervised.healthy, timeout=60, interval=0.2, what="/healthz 200 at start")
    worker = supervised.pid("worker")
    wait_for(lambda: cluster_workers(worker), timeout=30, what="workers alive")
    tree = supervised.tree()[1:]

    supervised.proc.kill()

    wait_for(lambda: all(gone(p) for p in tree), timeout=20, what="web and cluster to stop")
    assert not port_open("127.0.0.1", supervised.port), "the port is free for the next make run"
