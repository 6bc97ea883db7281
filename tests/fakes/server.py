"""The base of the fake upstream servers: a `ThreadingHTTPServer` on a port the OS picks,
serving from a daemon thread of the test process (or of a benchmark).

A fake subclasses `FakeServer` and sets `handler`, its request handler class (a
`FakeHandler`, which reaches the fake's state as `self.fake`; assigned after both
classes when the handler is written below the fake) and, where it differs, the server
class (e.g. a larger listen backlog) or the poll interval. `start()` binds and serves, `stop()` shuts down
and joins; `with SomeFake() as fake:` does both, which is what a fixture needs:

    @pytest.fixture
    def fake_thing() -> Iterator[FakeThing]:
        with FakeThing() as fake:
            yield fake
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class QuietServer(ThreadingHTTPServer):
    """Threaded (one daemon thread per request, so slow answers do not hold each other
    up); clients hanging up mid-request are part of the tests, not errors to print."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHandler(BaseHTTPRequestHandler):
    """A request handler of a fake: `self.fake` is the `FakeServer` it serves; no access log."""

    server: Any

    @property
    def fake(self) -> Any:
        return self.server.fake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


class FakeServer:
    """A fake upstream server on `host` (127.0.0.1 unless told), served in a daemon thread."""

    handler: ClassVar[type[FakeHandler]]
    server_class: ClassVar[type[ThreadingHTTPServer]] = QuietServer
    # serve_forever's poll interval: how long stop() may wait for the loop to notice.
    poll_interval: ClassVar[float] = 0.05
    join_timeout: ClassVar[float] = 5.0

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} not started"
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        """http://host:port, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._server = self.server_class((self.host, 0), self.handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=f"fake-{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
