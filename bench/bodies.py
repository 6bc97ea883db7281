"""The bodies benchmark: how much a web process grows on large request bodies.

A real daphne on the run's database gets an anonymous 60 MB POST (refused: over the
limit) and a logged-in 50 MB CSV upload (accepted: kept on disk for its background
import); the figure is the growth of daphne's RSS, next to the body's size. Goals:
< 50 MB for the refused one, < 100 MB for the accepted one.
"""

from __future__ import annotations

import http.client
import sys
from collections.abc import Iterator

import psutil

from bench.common import Bench, free_port, port_open

MB = 1024 * 1024
CSRF = "a" * 32  # any 32-character secret works as cookie and header alike


def run(bench: Bench) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    port = free_port()
    daphne = bench.service(
        "bodies-daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["config.asgi:application"],
        ready=lambda: port_open("127.0.0.1", port),
    )
    user, _ = get_user_model().objects.get_or_create(username="bench-bodies")
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    _post(port, "/login/", iter([b"a=1"]), {"Content-Length": "3"})  # lazy imports first
    refused = _grown(daphne.pid, lambda: _refused(port, bench.size(60, 20)))
    accepted = _grown(daphne.pid, lambda: _accepted(port, session, bench.size(50, 20)))
    for name, (status, grown, size) in {"refused": refused, "accepted": accepted}.items():
        bench.say(
            f"{name}: {size / MB:.0f} MB body, HTTP {status}, daphne grew {grown / MB:.1f} MB"
        )
    bench.figure(
        "refused anonymous POST, RSS growth",
        refused[1] / MB,
        "MB",
        baseline=("the body's size", refused[2] / MB, "MB"),
        better="lower",
        comment=f"HTTP {refused[0]}; goal < 50 MB",
    )
    bench.figure(
        "accepted upload, RSS growth",
        accepted[1] / MB,
        "MB",
        baseline=("the body's size", accepted[2] / MB, "MB"),
        better="lower",
        comment=f"HTTP {accepted[0]}; goal < 100 MB; the file goes to disk",
    )


def _grown(pid: int, send) -> tuple[int, int, int]:
    before = psutil.Process(pid).memory_info().rss
    status, size = send()
    return status, psutil.Process(pid).memory_info().rss - before, size


def _refused(port: int, megabytes: int) -> tuple[int, int]:
    size = megabytes * MB
    chunks = (b"x" * MB for _ in range(megabytes))
    headers = {"Content-Length": str(size), "Content-Type": "multipart/form-data; boundary=b"}
    headers["Cookie"] = f"csrftoken={CSRF}"
    return _post(port, "/sheets/upload/", chunks, headers), size


def _accepted(port: int, session: str, megabytes: int) -> tuple[int, int]:
    row = b"," + b"n" * 1000 + b"\r\n"
    rows = megabytes * MB // (len(row) + 8)
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
    head += b"Content-Type: text/csv\r\n\r\nid,notes\r\n"
    tail = b"\r\n--b--\r\n"

    def body() -> Iterator[bytes]:
        yield head
        for start in range(0, rows, 1000):
            yield b"".join(b"%d" % n + row for n in range(start, min(start + 1000, rows)))
        yield tail

    size = sum(len(part) for part in body())
    headers = {
        "Content-Type": "multipart/form-data; boundary=b",
        "Content-Length": str(size),
        "Cookie": f"sessionid={session}; csrftoken={CSRF}",
        "X-CSRFToken": CSRF,
    }
    return _post(port, "/sheets/upload/", body(), headers), size


def _post(port: int, path: str, chunks: Iterator[bytes], headers: dict) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=chunks, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (BrokenPipeError, ConnectionResetError):
        return 413  # refused while the body was still being sent
    finally:
        conn.close()
