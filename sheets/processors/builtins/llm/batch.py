"""The `llm` processor's batch mode, the provider's side: OpenAI's Batch API (`/files`,
`/batches`, output and error files), at the batch price, answered within 24 hours.

Here: the JSONL line a row is sent as, the calls (upload, create, find by metadata, poll,
cancel, read a file) and a line of the output or error file read back into the row's
outputs with the same checks as live mode; whether an endpoint has a Batch API at all is
`batch_probe`. The sheet side (chunks, the job's state, restarts, waiting) is
`sheets.rows.batch_mode`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from sheets.processors import USAGE_KEY, RowError
from sheets.processors.builtins.llm import api_message, parse_completion, request_body
from sheets.processors.builtins.llm.batch_probe import run_sync
from sheets.processors.builtins.llm.endpoints import allowed_endpoints, server_key
from sheets.processors.builtins.llm.fields import MODES, AnswerProblem, check_answer, parse_fields
from sheets.processors.builtins.llm.prompts import answer_columns, build_messages
from sheets.processors.outbound import guarded_client, host_of, send_capped

FINISHED = ("completed", "failed", "expired", "cancelled")
MARKER = "conveyor_marker"  # the metadata key a chunk's batch is found by after a crash
FIND_PAGES = 20  # pages of 100 batches looked through for a marker
FIND_MARGIN_SECONDS = 600  # clock skew allowed between us and the provider


class BatchAPIError(Exception):
    """A Batch API call failed. `transient`: the API was unreachable or answered 429 /
    5xx, so waiting and trying again makes sense; else its message says what is wrong."""

    def __init__(self, message: str, *, transient: bool, status: int = 0) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


# -- rows as lines, lines as outputs ----------------------------------------------------


def custom_id(number: int) -> str:
    return f"row-{number}"


def batch_line(number: int, row: dict[str, str], options: dict[str, Any], url: str) -> dict:
    """The JSONL line asking for a row: the same request live mode sends (fields asked
    for with a strict JSON schema: the Batch API takes it)."""
    mode = MODES[0] if parse_fields(options.get("fields", "")) else ""
    body = request_body(options, build_messages(row, options, MODES[0]), mode)
    return {"custom_id": custom_id(number), "method": "POST", "url": url, "body": body}


def line_outputs(line: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A row's outputs from its line of the output or error file, checked as in live
    mode; RowError (with what it cost, if anything) when the row has no valid answer."""
    error = line.get("error")
    if error:
        text = error.get("message") or error.get("code") if isinstance(error, dict) else error
        raise RowError(f"the batch could not answer this row: {text}")
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        shown = api_message(httpx.Response(status or 500, json=body))
        raise RowError(f"HTTP {status} from the API (in the batch): {shown}")
    answer, tokens, usage = parse_completion(
        httpx.Response(200, text=json.dumps(body)), options["model"]
    )
    return checked_outputs(answer, tokens, at_batch_price(usage), options)


def checked_outputs(answer: str, tokens: int | str, usage: dict, options: dict) -> dict[str, Any]:
    """The checks live mode makes of an answer (fields typed, a category one of the
    categories), without live mode's repair request: a batch answer is final."""
    if fields := parse_fields(options.get("fields", "")):
        try:
            values = check_answer(answer, fields)
        except AnswerProblem as problem:
            raise RowError(str(problem), usage=usage) from None
        return {**values, "tokens": tokens, USAGE_KEY: usage}
    return answer_columns(answer, options, tokens, usage)


def at_batch_price(usage: dict[str, float]) -> dict[str, float]:
    """A batch answer's usage: its cost at the operator's batch price (the live price
    times CONVEYOR_LLM_BATCH_PRICE_FACTOR, half by default, as OpenAI charges)."""
    if "cost_usd" in usage:
        factor = settings.CONVEYOR_LLM_BATCH_PRICE_FACTOR
        usage = {**usage, "cost_usd": usage["cost_usd"] * factor}
    return usage


def batch_status_text(status: str) -> str:
    return status.replace("_", " ")


# -- the API ----------------------------------------------------------------------------


class BatchAPI:
    """The Batch API of a job's endpoint, with its key, through the address guard like
    every row request. As a context manager it keeps one client (and event loop) for
    its calls, as a slice makes a few dozen; else each call opens its own."""

    def __init__(self, options: dict[str, Any], timeout: float = 0.0) -> None:
        self.timeout = timeout or settings.CONVEYOR_LLM_TIMEOUT
        self.base_url = (options.get("base_url") or settings.CONVEYOR_LLM_BASE_URL).rstrip("/")
        api_key = options.get("api_key") or server_key(self.base_url)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Each line names its endpoint as a path: "/v1/chat/completions" on OpenAI.
        self.chat_path = urlsplit(self.base_url).path.rstrip("/") + "/chat/completions"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None

    def __enter__(self) -> BatchAPI:
        self._loop = asyncio.new_event_loop()
        self._client = self._new_client()
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, client = self._loop, self._client
        self._loop = self._client = None
        if loop is not None and client is not None:
            try:
                loop.run_until_complete(client.aclose())
            finally:
                loop.close()

    def _new_client(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        hosts = [host_of(url) for url in allowed_endpoints()]
        return guarded_client(
            allowed_hosts=hosts, connections=2, headers=self.headers, timeout=timeout
        )

    def call(self, method: str, path: str, *, cap: int = 0, **kwargs: Any) -> httpx.Response:
        """One request; BatchAPIError unless the API answered 2xx."""
        cap = cap or settings.CONVEYOR_LLM_MAX_RESPONSE_BYTES
        too_big = f"the Batch API's answer to {path} is larger than {cap:,} bytes"

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            request = client.build_request(method, self.base_url + path, **kwargs)
            return await send_capped(client, request, cap, too_big)

        async def send_once() -> httpx.Response:
            async with self._new_client() as client:
                return await send(client)

        try:
            if self._loop is not None and self._client is not None:
                response = self._loop.run_until_complete(send(self._client))
            else:
                response = run_sync(send_once)
        except httpx.TransportError as exc:
            raise BatchAPIError(
                f"could not reach {self.base_url}: {type(exc).__name__}", transient=True
            ) from None
        except RowError as exc:
            raise BatchAPIError(str(exc), transient=False) from None
        if response.status_code >= 300:
            code = response.status_code
            raise BatchAPIError(
                f"HTTP {code} from {path}: {api_message(response)}",
                transient=code == 429 or code >= 500,
                status=code,
            )
        return response

    def upload(self, lines: list[dict[str, Any]]) -> str:
        """The id of a new input file holding these lines (purpose "batch")."""
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        files = {"file": ("rows.jsonl", data, "application/jsonl")}
        response = self.call("POST", "/files", data={"purpose": "batch"}, files=files)
        return response.json()["id"]

    def create(self, input_file_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        body = {
            "input_file_id": input_file_id,
            "endpoint": self.chat_path,
            "completion_window": "24h",
            "metadata": metadata,
        }
        return self.call("POST", "/batches", json=body).json()

    def get(self, batch_id: str) -> dict[str, Any]:
        return self.call("GET", f"/batches/{batch_id}").json()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self.call("POST", f"/batches/{batch_id}/cancel").json()

    def find(self, marker: str, since: float) -> dict[str, Any] | None:
        """The batch whose metadata holds `marker`, created after `since` (epoch seconds,
        when its intent was stored), or None: newest first, so the search stops at
        batches older than that, or after FIND_PAGES pages."""
        after = ""
        for _ in range(FIND_PAGES):
            query = f"?limit=100&after={after}" if after else "?limit=100"
            page = self.call("GET", f"/batches{query}").json()
            batches = page.get("data") or []
            for batch in batches:
                if (batch.get("metadata") or {}).get(MARKER) == marker:
                    return batch
            older = [b.get("created_at") or 0 for b in batches]
            if not page.get("has_more") or not batches:
                return None
            if older and min(older) < since - FIND_MARGIN_SECONDS:
                return None
            after = batches[-1]["id"]
        return None

    def lines(self, file_id: str) -> Iterator[dict[str, Any]]:
        """The JSON lines of an output or error file (blank or broken lines skipped)."""
        cap = settings.CONVEYOR_LLM_BATCH_MAX_FILE_BYTES * 2  # answers outweigh questions
        response = self.call("GET", f"/files/{file_id}/content", cap=cap)
        for text in response.text.splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict):
                yield line
