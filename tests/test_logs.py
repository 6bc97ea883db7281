"""Logs (config/logs.py): with LOG_FORMAT=json everything `make run` prints is one JSON
object per line (the supervisor, daphne with its access log, the cluster), and no
query value (a token, a key) reaches a log line, in JSON or in text."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import socket
import urllib.error

import pytest
from django.test import RequestFactory

from config.logs import MaskedJsonFormatter, TextFormatter, mask_query
from tests.daphne import NO_PROXY
from tests.support.processes import wait_for
from tests.test_supervisor import Supervised

SECRET = "sk-secret"


def get(url: str) -> int:
    try:
        with NO_PROXY.open(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def websocket_handshake(port: int, path: str) -> bytes:
    """Open a websocket (no session: the server accepts, then closes it) and read what
    comes back until the server ends the connection."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n\r\n"
    )
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request.encode())
        with contextlib.suppress(ConnectionResetError):  # its close frame is not answered
            while chunk := conn.recv(4096):
                received += chunk
    return received


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_make_run_with_log_format_json_prints_only_json_lines_and_no_query_values(tmp_path):
    supervised = Supervised(tmp_path / "supervisor.json", LOG_FORMAT="json")
    try:
        wait_for(supervised.healthy, timeout=60, interval=0.2, what="/healthz 200 at start")
        base = f"http://127.0.0.1:{supervised.port}"
        assert get(f"{base}/login/?api_key={SECRET}") == 200
        assert get(f"{base}/api/jobs/?api_key={SECRET}&page=2") == 401
        assert get(f"{base}/no-such-page/?token={SECRET}") == 404
        assert b"101 Switching Protocols" in websocket_handshake(
            supervised.port, f"/ws/live/?api_key={SECRET}"
        )
        assert get(f"{base}/healthz?last={SECRET}") == 200
        wait_for(
            lambda: "/healthz?last=***" in supervised.log(),
            timeout=20,
            interval=0.1,
            what="the last request in the access log",
        )
    finally:
        supervised.proc.send_signal(signal.SIGINT)
        assert supervised.proc.wait(timeout=20) == 0
    output = supervised.log()
    lines = [line for line in output.splitlines() if line.strip()]
    not_json = []
    for line in lines:
        try:
            assert isinstance(json.loads(line), dict)
        except (ValueError, AssertionError):
            not_json.append(line)
    assert not not_json, "lines that are not JSON objects:\n" + "\n".join(not_json)
    assert SECRET not in output
    access = [json.loads(line) for line in lines if '"daphne.access"' in line]
    paths = {entry["path"] for entry in access}
    assert {"/login/?api_key=***", "/api/jobs/?api_key=***&page=***"} <= paths
    assert any(entry.get("method") == "WSCONNECT" for entry in access), access
    loggers = {json.loads(line)["logger"] for line in lines}
    assert {"supervise", "daphne.cli", "daphne.access", "django.request"} <= loggers


def test_query_values_are_masked_in_messages_requests_and_text_lines():
    assert mask_query("/a/?api_key=sk-1&page=2#top") == "/a/?api_key=***&page=***#top"
    assert mask_query("GET '/x?token=abc' 200") == "GET '/x?token=***' 200"
    assert mask_query("no query here: a=b") == "no query here: a=b"
    request = RequestFactory().get("/api/jobs/", {"api_key": SECRET})
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s",
                               (f"/api/jobs/?api_key={SECRET}",), None)  # fmt: skip
    record.request = request
    line = json.loads(MaskedJsonFormatter("%(levelname)s %(message)s").format(record))
    assert line["request"] == "GET /api/jobs/?api_key=***"
    assert line["message"] == "Not Found: /api/jobs/?api_key=***"
    text = TextFormatter("%(message)s").format(record)
    assert text == "Not Found: /api/jobs/?api_key=***"
