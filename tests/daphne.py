"""A real `daphne` web process on 127.0.0.1 for tests that need HTTP and websockets
served the way production serves them (another process, its own live relay)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from tests.conftest import log_path, subprocess_env
from tests.support.processes import free_port, read_log, spawn, stop_process_group, wait_for

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
        self.proc = spawn(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
            + ["config.asgi:application"],
            log_path=self.log_path,
            env=subprocess_env(**self.env),
            append=True,
        )
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
        return read_log(self.log_path)
