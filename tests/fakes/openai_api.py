"""A fake OpenAI-compatible API on 127.0.0.1 for the `llm` processor's tests.

Serves `POST /v1/chat/completions` and `GET /v1/models` from a threading HTTP server,
so slow answers do not hold each other up. Behaviour is set on the `FakeOpenAI` object:
`latency` per request, `categories` to answer from (the first one named in the last
user message; "Banana" when that message contains WRONG), `style` to reformat answers,
`plan(marker, [statuses])` to fail requests whose messages contain `marker` with those
statuses first (429s carry `retry_after`, a string or a function making one),
`rate_limit_every` to answer 429 to every n-th request, `error_fraction` of random 500s,
and `api_key` to require. `structured(call)` answers every request with a dict (sent as
JSON) or a string (sent as is); `refuse_formats` lists the `response_format` types
answered 400 with `format_refusal`, as older vLLM / Ollama / llama.cpp servers do.
`rpm_limit` / `tpm_limit` enforce requests and tokens per minute as OpenAI does: a
token bucket refilled continuously, holding `limit_window` seconds' worth (60: OpenAI's
whole minute; less is stricter), checked when a request arrives (its tokens: prompt
characters / 4 + max_tokens, 16 without), with `x-ratelimit-limit/remaining/reset-
requests/-tokens` on every answer and a 429 with `retry-after` when over (`limited`
counts them). `outage` takes the API down: 503 answers them all, "drop" hangs up
without an answer (a connection failure); None brings it back.
It records every request (`calls`), the high-water mark of
requests in flight and how many clients hung up before their answer (`dropped`).
Use the `fake_openai` fixture; it stops the server after the test.
"""

from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes.server import FakeHandler, FakeServer, QuietServer


@dataclass
class Call:
    body: dict[str, Any]
    started: float
    status: int = 0
    finished: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    number: int = 0  # 1 for the first request the server received
    limit_headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-*

    @property
    def user_message(self) -> str:
        return next(m["content"] for m in reversed(self.body["messages"]) if m["role"] == "user")

    @property
    def response_format(self) -> str:
        """The `response_format` type asked for ("" when none)."""
        return (self.body.get("response_format") or {}).get("type", "")

    @property
    def system_message(self) -> str:
        return " ".join(m["content"] for m in self.body["messages"] if m["role"] == "system")


class BusyServer(QuietServer):
    request_queue_size = 128  # a batch opens many connections at once


class FakeOpenAI(FakeServer):
    server_class = BusyServer

    def __init__(self) -> None:
        super().__init__()
        self.latency: float | Callable[[Call], float] = 0.0
        self.categories: list[str] = []
        self.style: Callable[[str], str] = lambda answer: answer
        self.retry_after: str | Callable[[], str] | None = "1"
        self.error_fraction = 0.0
        self.rate_limit_every = 0
        self.api_key: str | None = None
        self.echo_key = False  # a 401 quotes the key it was sent
        self.structured: Callable[[Call], dict | str] | None = None
        self.refuse_formats: set[str] = set()
        self.format_refusal = "Unsupported response_format type: {type}"
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.dropped = 0
        self.batch_api: Any = None  # a Batch API (tests/fakes/openai_batch.py), if attached
        self.rpm_limit = 0
        self.tpm_limit = 0
        self.limit_window = 60.0
        self.limited = 0  # requests answered 429 by the rpm/tpm limits
        self.outage: int | str | None = None
        self._buckets: dict[str, list[float]] = {}  # kind: [level, at]
        self._plans: dict[str, list[int]] = {}
        self._random = random.Random(1234)
        self._lock = threading.Lock()

    # -- control ----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def plan(self, marker: str, statuses: list[int]) -> None:
        """Requests mentioning `marker` get these statuses first, one per request."""
        self._plans[marker] = list(statuses)

    # -- behaviour --------------------------------------------------------------
    def answer(self, call: Call) -> str:
        if self.structured is not None:
            data = self.structured(call)
            return data if isinstance(data, str) else json.dumps(data)
        text = call.user_message
        if "WRONG" in text:
            return self.style("Banana")
        if self.categories:
            lowered = text.lower()
            found = [c for c in self.categories if c.lower() in lowered]
            return self.style(found[0] if found else self.categories[0])
        return self.style(f"echo: {text}")

    def status_for(self, call: Call) -> int:
        with self._lock:
            for marker, statuses in self._plans.items():
                if statuses and marker in json.dumps(call.body["messages"]):
                    return statuses.pop(0)
            if self.rate_limit_every and call.number % self.rate_limit_every == 0:
                return 429
            if self.error_fraction and self._random.random() < self.error_fraction:
                return 500
        return 200

    def admit(self, call: Call) -> float:
        """Count `call` against the rpm/tpm buckets: 0 when it may go, else the seconds
        until it could (a 429). Sets its x-ratelimit headers either way."""
        cost = {
            "requests": 1.0,
            "tokens": sum(len(str(m.get("content", ""))) for m in call.body.get("messages", []))
            // 4
            + 1
            + (call.body.get("max_tokens") or 16),
        }
        limits = {"requests": self.rpm_limit, "tokens": self.tpm_limit}
        now = time.monotonic()
        with self._lock:
            levels = {}
            for kind, limit in limits.items():
                if not limit:
                    continue
                rate, capacity = limit / 60.0, max(1.0, limit * self.limit_window / 60.0)
                level, at = self._buckets.setdefault(kind, [capacity, now])
                levels[kind] = (min(capacity, level + (now - at) * rate), rate, capacity)
            short = [
                (cost[kind] - level) / rate
                for kind, (level, rate, _) in levels.items()
                if level < cost[kind]
            ]
            wait = max(short, default=0.0)
            for kind, (level, rate, capacity) in levels.items():
                left = level if wait else level - cost[kind]
                self._buckets[kind] = [left, now]
                call.limit_headers.update(
                    {
                        f"x-ratelimit-limit-{kind}": str(limits[kind]),
                        f"x-ratelimit-remaining-{kind}": str(max(0, int(left))),
                        f"x-ratelimit-reset-{kind}": f"{(capacity - left) / rate * 1000:.0f}ms",
                    }
                )
            if wait:
                self.limited += 1
        return wait

    def _enter(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            call.number = len(self.calls)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _answered(self, call: Call, status: int) -> None:
        """Recorded before the response is written, so a client holding it sees the call."""
        with self._lock:
            call.status = status
            call.finished = time.monotonic()

    def _leave(self, call: Call) -> None:
        with self._lock:
            self.in_flight -= 1
            if call.status == 0:
                self.dropped += 1


ERRORS = {
    400: ("invalid_request_error", "Invalid value for 'temperature': must be at most 2."),
    401: ("invalid_api_key", "Incorrect API key provided."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    503: ("server_error", "The engine is currently overloaded."),
}


class _Handler(FakeHandler):
    fake: FakeOpenAI
    call: Call | None = None
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait 40 ms for a delayed ACK
    timeout = 10

    def do_GET(self) -> None:
        if self.fake.batch_api is not None and self.fake.batch_api.serves(self.path):
            return self.fake.batch_api.handle(self, "GET")
        if self.path.rstrip("/") != "/v1/models":
            return self._json(404, {"error": {"message": "Not found"}})
        return self._json(200, {"object": "list", "data": [{"id": "fake-model"}]})

    def do_POST(self) -> None:
        if self.fake.batch_api is not None and self.fake.batch_api.serves(self.path):
            return self.fake.batch_api.handle(self, "POST")
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"No route {self.path}"}})
        call = self.call = Call(body=body, started=time.monotonic(), headers=dict(self.headers))
        self.fake._enter(call)
        try:
            if self.fake.outage == "drop":
                self.close_connection = True  # hang up without an answer
                return None
            if self.fake.outage:
                return self._error(int(self.fake.outage))
            if wait := self.fake.admit(call):
                error = {"message": ERRORS[429][1], "type": ERRORS[429][0]}
                return self._json(429, {"error": error}, {"Retry-After": f"{wait:.3f}"})
            latency = self.fake.latency
            if self._wait(latency(call) if callable(latency) else latency):
                self._respond(call)
        finally:
            self.fake._leave(call)
            self.call = None
        return None

    def _respond(self, call: Call) -> int:
        fake = self.fake
        sent = self.headers.get("authorization", "")
        if fake.api_key and sent != f"Bearer {fake.api_key}":
            if fake.echo_key:  # as OpenAI does: "Incorrect API key provided: sk-..."
                error = {"message": f"Incorrect API key provided: {sent.removeprefix('Bearer ')}"}
                return self._json(401, {"error": error})
            return self._error(401)
        if call.response_format in fake.refuse_formats:
            message = fake.format_refusal.format(type=call.response_format)
            error = {"message": message, "type": "invalid_request_error"}
            return self._json(400, {"error": error})
        status = fake.status_for(call)
        if status != 200:
            return self._error(status)
        answer = fake.answer(call)
        prompt_tokens = sum(len(m["content"].split()) for m in call.body["messages"])
        completion_tokens = len(answer.split())
        return self._json(
            200,
            {
                "id": f"chatcmpl-{len(fake.calls)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.body.get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _error(self, status: int) -> int:
        kind, message = ERRORS.get(status, ("error", f"HTTP {status}"))
        headers = {}
        retry_after = self.fake.retry_after
        if status == 429 and retry_after is not None:
            headers["Retry-After"] = retry_after() if callable(retry_after) else retry_after
        return self._json(status, {"error": {"message": message, "type": kind}}, headers)

    def _json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> int:
        payload = json.dumps(data).encode()
        if self.call is not None:
            self.fake._answered(self.call, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        limit_headers = self.call.limit_headers if self.call is not None else {}
        for name, value in {**limit_headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        return status

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds`, but notice a client hanging up: False when it did."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if not readable:
                continue
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    self.close_connection = True
                    return False
            except OSError:
                self.close_connection = True
                return False
            time.sleep(max(0.0, deadline - time.monotonic()))
        return True


FakeOpenAI.handler = _Handler


@pytest.fixture
def fake_openai(settings, monkeypatch) -> Iterator[FakeOpenAI]:
    """A fake the operator allows as an LLM endpoint (here, and in web processes started
    after it); it is not the server's own endpoint, so it never gets OPENAI_API_KEY."""
    with FakeOpenAI() as server:
        allowed = [*settings.CONVEYOR_LLM_ALLOWED_BASE_URLS, server.base_url]
        settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = allowed
        monkeypatch.setenv("CONVEYOR_LLM_ALLOWED_BASE_URLS", ",".join(allowed))
        yield server
