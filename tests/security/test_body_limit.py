"""Request bodies are bounded before Django reads them (config/body_limit.py), measured on
a real daphne: what an oversized body costs the web process, and what a client sees."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator

import psutil
import pytest
from django.test import Client

from tests.daphne import Daphne

MB = 1024 * 1024
CHUNK = b"x" * MB
CSRF = "a" * 32  # any 32-character secret works as cookie and header alike


@pytest.fixture
def web(transactional_db) -> Iterator[Daphne]:
    server = Daphne().start()
    yield server
    server.stop()


def rss(server: Daphne) -> int:
    return psutil.Process(server.proc.pid).memory_info().rss


def post(server: Daphne, path: str, chunks: Iterator[bytes], headers: dict) -> tuple[int, bytes]:
    """POST a body streamed from `chunks`; the response's status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        chunked = "Content-Length" not in headers
        conn.request("POST", path, body=chunks, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def megabytes(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield CHUNK


def warm_up(server: Daphne) -> None:
    """One ordinary request and one refused one, so lazy imports don't count as growth."""
    post(server, "/login/", iter([b"a=1"]), {"Content-Length": "3"})
    post(server, "/login/", megabytes(3), {"Content-Length": str(3 * MB)})


def test_declared_oversized_body_gets_413_at_once(web):
    """The answer comes after the headers: the client need not send the body at all."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        head = (
            f"POST /sheets/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {60 * MB}\r\n\r\n"
        )
        sock.sendall(head.encode() + CHUNK)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_anonymous_60_mb_post_is_refused_without_growing_daphne(web):
    warm_up(web)
    before = rss(web)
    status, body = post(
        web,
        "/sheets/upload/",
        megabytes(60),
        {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(60 * MB)},
    )
    grown = rss(web) - before
    assert status == 413, body
    assert b"too large" in body
    assert grown < 50 * MB, f"daphne grew by {grown / MB:.0f} MB"


def test_chunked_60_mb_post_is_cut_with_413(web):
    warm_up(web)
    before = rss(web)
    status, body = post(web, "/sheets/upload/", megabytes(60), {"Content-Type": "text/plain"})
    grown = rss(web) - before
    assert status == 413, body
    assert grown < 50 * MB, f"daphne grew by {grown / MB:.0f} MB"


def test_small_limit_applies_outside_uploads(web):
    status, _ = post(web, "/login/", megabytes(3), {"Content-Length": str(3 * MB)})
    assert status == 413
    status, _ = post(web, "/api/jobs/", megabytes(3), {"Content-Type": "application/json"})
    assert status == 413


def test_accepted_50_mb_upload_streams_to_disk(web, user):
    """A 50 MB CSV inside the limit is accepted (kept on disk for its background import)
    and daphne grows by far less than 2x it."""
    client = Client()
    client.force_login(user)
    cookies = f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}"
    warm_up(web)
    row = b"," + b"n" * 1000 + b"\r\n"
    rows = 50 * MB // (len(row) + 8)
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
    head += b"Content-Type: text/csv\r\n\r\nid,notes\r\n"
    tail = b"\r\n--b--\r\n"

    def body() -> Iterator[bytes]:
        yield head
        for start in range(0, rows, 1000):
            yield b"".join(b"%d" % n + row for n in range(start, min(start + 1000, rows)))
        yield tail

    size = sum(len(part) for part in body())
    assert size > 49 * MB
    before = rss(web)
    started = time.monotonic()
    status, answer = post(
        web,
        "/sheets/upload/",
        body(),
        {
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(size),
            "Cookie": cookies,
            "X-CSRFToken": CSRF,
        },
    )
    grown = rss(web) - before
    assert status == 302, answer[:500]
    from jobs.models import Job
    from sheets.io.importing import kept_upload
    from sheets.models import Sheet

    sheet = Sheet.objects.get(owner=user)
    assert sheet.status == "importing" and sheet.columns == ["id", "notes"]
    kept = kept_upload(Job.objects.get(kind="sheets.import").params["upload"])
    assert os.path.getsize(kept) > 49 * MB
    assert grown < 100 * MB, f"daphne grew by {grown / MB:.0f} MB"
    print(f"50 MB upload: {time.monotonic() - started:.1f} s, daphne grew {grown / MB:.0f} MB")


# --- the ASGI layer alone, for servers that stream bodies (uvicorn, hypercorn) ---------


class RecordingApp:
    """An inner ASGI app that reads the whole body the way Django does."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.called = False

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        if message["type"] == "http.disconnect":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app, path: str, chunks: list[bytes], headers: list | None = None) -> list[dict]:
    from config.body_limit import BodyLimitMiddleware

    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers or []}
    await BodyLimitMiddleware(app)(scope, receive, send)
    return sent


@pytest.mark.asyncio
async def test_asgi_layer_refuses_declared_length_without_running_the_app(settings):
    settings.CONVEYOR_MAX_REQUEST_BYTES = 1000
    app = RecordingApp()
    sent = await call(app, "/jobs/", [b"x" * 10], [(b"content-length", b"1001")])
    assert sent[0]["status"] == 413
    assert not app.called


@pytest.mark.asyncio
async def test_asgi_layer_cuts_a_streamed_body_and_the_app_never_sees_it_complete(settings):
    settings.CONVEYOR_MAX_REQUEST_BYTES = 1000
    app = RecordingApp()
    sent = await call(app, "/jobs/", [b"x" * 600, b"x" * 600, b"x" * 10])
    assert sent[0]["status"] == 413
    assert [m["type"] for m in app.messages] == ["http.request", "http.disconnect"]
    assert not any(m.get("more_body") is False for m in app.messages)


@pytest.mark.asyncio
async def test_asgi_layer_passes_bodies_within_the_limit(settings):
    settings.CONVEYOR_MAX_REQUEST_BYTES = 1000
    app = RecordingApp()
    sent = await call(app, "/jobs/", [b"x" * 500, b"x" * 500], [(b"content-length", b"1000")])
    assert sent[0]["status"] == 200
    uploads = await call(RecordingApp(), "/sheets/upload/", [b"x" * 5000])
    assert uploads[0]["status"] == 200
