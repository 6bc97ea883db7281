"""A fake of OpenAI's Batch API, attached to the fake OpenAI server (`FakeOpenAI`).

Serves `POST /v1/files` (multipart, purpose=batch), `GET /v1/files/{id}/content`,
`POST /v1/batches`, `GET /v1/batches` (newest first, `limit`/`after`),
`GET /v1/batches/{id}` and `POST /v1/batches/{id}/cancel`. A batch is `validating`
when created, then `in_progress` (its counts rising with time) and `completed` once
`delay` seconds have passed since its creation, with its output file (answers made by
the fake's `answer`, as live) and an error file for lines whose user message holds
FAIL_IN_BATCH (HTTP 400). `hold` keeps batches in progress, half answered, until it is
cleared; `late_creates` ({n: seconds}) answers the n-th create that late, the batch
already made; `refuse` fails every batch's validation with that message. No chat-completions request is made or recorded (`FakeOpenAI.calls`).
Use the `fake_openai_batch` fixture: the `fake_openai` server with this API on it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.openai_api import Call, FakeOpenAI

FAIL_MARKER = "FAIL_IN_BATCH"


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str]
    lines: list[dict[str, Any]]
    created: float = field(default_factory=time.monotonic)
    created_at: int = field(default_factory=lambda: int(time.time()))
    cancelled: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None


class FakeBatchAPI:
    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.delay = 0.0  # seconds from a batch's creation to its completion
        self.hold = False  # batches stay in progress (half answered) while True
        self.late_creates: dict[int, float] = {}  # n-th create: seconds it answers late
        self.refuse = ""  # batches fail validation with this message (a model not allowed...)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, FakeBatch] = {}  # in creation order
        self.cancelled: list[str] = []  # ids of batches a cancel was asked for
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- what the tests read ------------------------------------------------------------
    @property
    def created(self) -> list[FakeBatch]:
        return list(self.batches.values())

    def status_of(self, batch: FakeBatch) -> str:
        """validating → in_progress → completed (cancelled when asked), by age."""
        if batch.cancelled:
            return "cancelled"
        if self.refuse:
            return "failed"
        if self.hold or time.monotonic() - batch.created < self.delay:
            return "in_progress"
        return "completed"

    # -- routing ------------------------------------------------------------------------
    @staticmethod
    def serves(path: str) -> bool:
        return urlsplit(path).path.startswith(("/v1/files", "/v1/batches"))

    def handle(self, handler: Any, method: str) -> None:
        sent = handler.headers.get("authorization", "")
        if self.fake.api_key and sent != f"Bearer {self.fake.api_key}":
            return handler._json(401, {"error": {"message": "Incorrect API key provided."}})
        url = urlsplit(handler.path)
        parts = url.path.strip("/").split("/")[1:]  # after "v1"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("content-length", 0))
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            status, answer = self._route(method, parts, query, body, handler.headers)
        late = self.late_creates.get(len(self.batches))
        # The batch exists: a client killed while it waits never learns its id.
        if (method, parts) == ("POST", ["batches"]) and late and not handler._wait(late):
            return None
        if isinstance(answer, bytes):
            return self._raw(handler, status, answer)
        return handler._json(status, answer)

    def _route(self, method: str, parts: list[str], query: dict, body: bytes, headers: Any):
        match method, parts:
            case "POST", ["files"]:
                return self._upload(body, headers.get("content-type", ""))
            case "GET", ["files", file_id, "content"] if file_id in self.files:
                return 200, self.files[file_id]
            case "POST", ["batches"]:
                return self._create(json.loads(body or b"{}"))
            case "GET", ["batches"]:
                return 200, self._list(query)
            case "GET", ["batches", batch_id] if batch_id in self.batches:
                return 200, self._view(self.batches[batch_id])
            case "POST", ["batches", batch_id, "cancel"] if batch_id in self.batches:
                batch = self.batches[batch_id]
                self.cancelled.append(batch_id)
                if self.status_of(batch) != "completed":
                    batch.cancelled = True
                view = self._view(batch)
                if batch.cancelled:
                    view["status"] = "cancelling"
                return 200, view
        return 404, {"error": {"message": f"No route {method} /v1/{'/'.join(parts)}"}}

    # -- files and batches ------------------------------------------------------------------
    def _upload(self, body: bytes, content_type: str):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }
        if fields.get("purpose") != b"batch" or not fields.get("file"):
            return 400, {"error": {"message": "purpose must be batch, with a file"}}
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = fields["file"]
        return 200, {"id": file_id, "object": "file", "purpose": "batch"}

    def _create(self, request: dict[str, Any]):
        file_id = request.get("input_file_id")
        if file_id not in self.files or request.get("completion_window") != "24h":
            return 400, {"error": {"message": "input_file_id and completion_window 24h"}}
        lines = [json.loads(text) for text in self.files[file_id].decode().splitlines() if text]
        batch = FakeBatch(
            id=f"batch_{next(self._ids)}",
            input_file_id=file_id,
            endpoint=request.get("endpoint", ""),
            metadata=dict(request.get("metadata") or {}),
            lines=lines,
        )
        self.batches[batch.id] = batch
        counts = {"total": len(lines), "completed": 0, "failed": 0}
        return 200, {**self._view(batch), "status": "validating", "request_counts": counts}

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        newest = list(reversed(self.batches.values()))
        if after := query.get("after"):
            ids = [b.id for b in newest]
            newest = newest[ids.index(after) + 1 :] if after in ids else []
        limit = min(int(query.get("limit", 20)), 100)
        page = newest[:limit]
        return {
            "object": "list",
            "data": [self._view(b) for b in page],
            "has_more": len(newest) > limit,
        }

    def _view(self, batch: FakeBatch) -> dict[str, Any]:
        status = self.status_of(batch)
        total = len(batch.lines)
        if status == "completed":
            self._finish(batch)
            done = total
        elif status == "failed":
            done = 0
        elif self.hold:
            done = total // 2
        else:
            share = (time.monotonic() - batch.created) / self.delay if self.delay else 1
            done = min(total - 1, int(total * share)) if total else 0
        failed = sum(1 for line in batch.lines if FAIL_MARKER in json.dumps(line["body"]))
        done = done if status != "cancelled" else 0
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "created_at": batch.created_at,
            "metadata": batch.metadata,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "errors": {"data": [{"message": self.refuse}]} if status == "failed" else None,
            "request_counts": {
                "total": total,
                "completed": done - failed if status == "completed" else done,
                "failed": failed if status == "completed" else 0,
            },
        }

    def _finish(self, batch: FakeBatch) -> None:
        """The output and error files of a completed batch (made once)."""
        if batch.output_file_id is not None:
            return
        answers, errors = [], []
        for line in batch.lines:
            call = Call(body=line["body"], started=time.monotonic())
            if FAIL_MARKER in call.user_message:
                error = {"message": "Invalid request in the batch.", "type": "invalid_request"}
                response = {"status_code": 400, "body": {"error": error}}
                errors.append({"custom_id": line["custom_id"], "response": response})
                continue
            answer = self.fake.answer(call)
            prompt = sum(len(m["content"].split()) for m in call.body["messages"])
            completion = len(answer.split())
            body = {
                "object": "chat.completion",
                "model": call.body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
            response = {"status_code": 200, "body": body}
            answers.append({"custom_id": line["custom_id"], "response": response, "error": None})
        batch.output_file_id = self._store(answers)
        batch.error_file_id = self._store(errors) if errors else None

    def _store(self, lines: list[dict[str, Any]]) -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return file_id

    @staticmethod
    def _raw(handler: Any, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture
def fake_openai_batch(fake_openai: FakeOpenAI) -> Iterator[FakeBatchAPI]:
    """The fake OpenAI server (`fake_openai`) with a Batch API on it."""
    fake_openai.batch_api = FakeBatchAPI(fake_openai)
    yield fake_openai.batch_api
    fake_openai.batch_api = None
