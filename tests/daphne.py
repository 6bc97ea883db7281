"""A real `daphne` web process on 127.0.0.1 for tests that need HTTP and websockets
served the way production serves them (another process, its own live relay)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from tests.conftest import ROOT, free_port, log_path, stop_process_group, subprocess_env, wait_for

# Straight to 127.0.0.1, whatever http_proxy says.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Daphne:
    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log_path("daphne")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daphne:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
            + ["config.asgi:application"],
            cwd=ROOT,
            env=subprocess_env(**self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(self._answers, timeout=30, interval=0.1, what=f"daphne on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daphne exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with NO_PROXY.open(f"{self.url}/login/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
