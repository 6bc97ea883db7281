"""A webhook receiver on 127.0.0.1: it records every POST (headers and body) and answers
with the next status of `statuses` (then 200), so a test can fail a delivery on purpose
and see it retried. `verify(request, secret)` checks a `Conveyor-Signature` the way a
receiver should: HMAC-SHA256 of "t.body" with the webhook's secret, compared in
constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from typing import Any

from tests.fakes.server import FakeHandler, FakeServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(FakeServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.origin}/hook"

    def answer(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 200

    @staticmethod
    def verify(request: Received, secret: str) -> bool:
        fields = dict(
            part.split("=", 1) for part in request.headers["Conveyor-Signature"].split(",")
        )
        signed = f"{fields['t']}.".encode() + request.body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields["v1"])


class ReceiverHandler(FakeHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status = self.fake.answer()
        with self.fake.lock:
            self.fake.received.append(Received(self.path, dict(self.headers.items()), body))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


WebhookReceiver.handler = ReceiverHandler
