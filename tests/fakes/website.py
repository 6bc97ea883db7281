"""A small fake website on 127.0.0.1 for the `web` processor's tests.

Pages: `/` (title, meta description, nav, script and main text), `/plain` (no main
element), `/long` (1,000 words), `/latin1` (ISO-8859-1 text declared in the header), `/redirect/N` (a chain of
N relative redirects to `/`), `/loop/a` <-> `/loop/b`, `/to?url=...` (a redirect
anywhere), `/slow` (answers after `slow_seconds`), `/huge` and `/huge-chunked` (bigger
than any test cap, with and without Content-Length), `/flaky` (503 with Retry-After: 0
for the first `flaky_failures` requests), `/missing` (404), `/data.json` and
`/report.pdf`, `/busy` (429 with Retry-After: `busy_retry_after` for the first
`busy_failures` requests), `/robots.txt` (`robots`: its text, or a status such as "503"; a 404 when None). Every
answer waits `latency` seconds first. `requests` lists the paths asked for; `dropped`
counts clients that hung up while `/slow` was waiting; `peak` is the most requests it
was answering at once. Use the `fake_site` fixture, or `FakeSite(host=...)` on another
loopback address (127.0.0.2, 127.0.0.3...) to stand for another host.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.server import FakeHandler, FakeServer

MAIN_TEXT = "Acme makes the finest widgets. Our widgets are sturdy, cheap and blue."
HOME = f"""<!doctype html>
<html lang="en-GB"><head>
  <title>
    Acme   Widgets
  </title>
  <meta name="Description" content="  Widgets for every   occasion. ">
  <style>body {{ color: blue; }}</style>
  <script>window.tracking = "lots of script text that is not content";</script>
</head><body>
  <nav><a href="/">Home</a> <a href="/about">About us and a long menu</a></nav>
  <main><h1>Acme</h1>
    <p>{MAIN_TEXT}</p>
    <script>var inline = 1;</script>
  </main>
  <footer>
    <p class="address">1 Widget Way, Leeds</p>
    <a href="mailto:Sales@Acme.example?subject=Hi">Write to us</a> or hello@acme.example
    <a href="tel:+44 20 7946 0958">Call</a> (fax: +44 20 7946 0959; since 1999)
    <a href="https://www.linkedin.com/company/acme-widgets">LinkedIn</a>
    <a href="https://www.facebook.com/sharer/sharer.php?u=acme">Share</a>
    <a href="https://twitter.com/acmewidgets">Twitter</a>
    <img class="logo" src="/logo.png" alt="Acme logo">
  </footer>
</body></html>"""
HOME_TEXT = f"Acme {MAIN_TEXT}"
HOME_EMAILS = "sales@acme.example, hello@acme.example"
HOME_PHONES = "+442079460958, +442079460959"
HOME_SOCIAL = "https://www.linkedin.com/company/acme-widgets, https://twitter.com/acmewidgets"
PLAIN = "<html><head><title>Plain page</title></head><body><p>Just a body.</p></body></html>"
LATIN1 = "<html><head><title>Café déjà vu</title></head><body>Crème brûlée</body></html>"
LONG_TEXT = " ".join(f"word{n}" for n in range(1, 1001))
LONG = f"<html><body><main><p>{LONG_TEXT}</p></main></body></html>"
NOT_FOUND = "<html><head><title>Not Found</title></head><body>Nothing here.</body></html>"
HUGE_BYTES = 3_000_000
CHUNK = b"<p>" + b"x" * 65_000 + b"</p>\n"


class FakeSite(FakeServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.slow_seconds = 5.0
        self.flaky_failures = 1
        self.busy_failures = 1
        self.busy_retry_after = "0"
        self.robots: str | None = None
        self.latency = 0.0
        self.requests: list[str] = []
        self.times: list[float] = []  # time.monotonic() of each request, as `requests`
        self.dropped = 0
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def url(self, path: str = "/") -> str:
        return f"{self.origin}{path}"

    def record(self, path: str) -> int:
        with self._lock:
            self.requests.append(path)
            self.times.append(time.monotonic())
            return sum(1 for seen in self.requests if seen == path)

    def enter(self) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


class _Handler(FakeHandler):
    fake: FakeSite
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait 40 ms for a delayed ACK
    timeout = 10

    def do_GET(self) -> None:
        self.fake.enter()
        try:
            if self.fake.latency:
                time.sleep(self.fake.latency)  # the site's own answer time, not a test wait
            self._answer()
        finally:
            self.fake.leave()

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        times = self.fake.record(path)
        if path == "/":
            return self._send(200, HOME)
        if path == "/plain":
            return self._send(200, PLAIN)
        if path == "/long":
            return self._send(200, LONG)
        if path == "/latin1":
            return self._send(200, LATIN1.encode("latin-1"), "text/html; charset=iso-8859-1")
        if path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            return self._redirect(f"/redirect/{left - 1}" if left > 1 else "/")
        if path == "/loop/a":
            return self._redirect("/loop/b")
        if path == "/loop/b":
            return self._redirect("/loop/a")
        if path == "/to":
            return self._redirect(parse_qs(parts.query)["url"][0])
        if path == "/slow":
            return self._slow()
        if path == "/huge":
            return self._huge(chunked=False)
        if path == "/huge-chunked":
            return self._huge(chunked=True)
        if path == "/flaky" and times <= self.fake.flaky_failures:
            return self._send(503, "<title>Busy</title>", headers={"Retry-After": "0"})
        if path == "/flaky":
            return self._send(200, "<html><head><title>Recovered</title></head></html>")
        if path == "/robots.txt" and self.fake.robots is not None:
            if self.fake.robots.isdigit():  # a status instead of a file
                return self._send(int(self.fake.robots), "<title>robots.txt?</title>")
            return self._send(200, self.fake.robots, "text/plain")
        if path == "/busy" and times <= self.fake.busy_failures:
            headers = {"Retry-After": self.fake.busy_retry_after}
            return self._send(429, "<title>Slow down</title>", headers=headers)
        if path == "/busy":
            return self._send(200, "<html><head><title>Welcome back</title></head></html>")
        if path == "/data.json":
            return self._send(200, '{"title": "not html"}', "application/json")
        if path == "/report.pdf":
            return self._send(200, b"%PDF-1.4 fake", "application/pdf")
        return self._send(404, NOT_FOUND)

    def _send(
        self,
        status: int,
        body: str | bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _slow(self) -> None:
        deadline = time.monotonic() + self.fake.slow_seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                with self.fake._lock:
                    self.fake.dropped += 1
                self.close_connection = True
                return
        self._send(200, PLAIN)

    def _huge(self, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        sent = 0
        try:
            while sent < HUGE_BYTES:
                chunk = CHUNK[: HUGE_BYTES - sent]
                frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                self.wfile.write(frame)
                sent += len(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True


FakeSite.handler = _Handler


@pytest.fixture
def fake_site() -> Iterator[FakeSite]:
    with FakeSite() as site:
        yield site
