"""Whether an endpoint has a Batch API, for `mode=batch` (refused at submit where it has
none), asked once an hour per endpoint and process (a proxy may gain one); and `run_sync`, how the sync code of batch
mode (a form's validation, a job handler) makes its async requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from sheets.processors.builtins.llm.endpoints import allowed_endpoints, endpoint, server_key
from sheets.processors.outbound import guarded_client, host_of

T = TypeVar("T")
PROBE_TIMEOUT_SECONDS = 10.0
PROBE_KEEP_SECONDS = 3600.0
# endpoint -> what its probe said (this process), and when (time.monotonic())
_has_batch_api: dict[str, tuple[bool, float]] = {}


def batch_refusal(base_url: str, api_key: str) -> str:
    """Why `mode=batch` cannot run on this endpoint ("" if it can): it has no Batch API
    when `GET {base_url}/batches` answers 404 or 405. An answer that says nothing (401,
    5xx, no connection) is not kept and does not refuse: the job reports the problem."""
    key = endpoint(base_url)
    known, when = _has_batch_api.get(key, (False, -PROBE_KEEP_SECONDS))
    if time.monotonic() - when >= PROBE_KEEP_SECONDS:
        status = probe(base_url.rstrip("/"), api_key or server_key(base_url))
        if status is None or (status >= 300 and status not in (404, 405)):
            return ""
        known = status < 300
        _has_batch_api[key] = (known, time.monotonic())
    if known:
        return ""
    return (
        f"{base_url} has no Batch API (GET {base_url.rstrip('/')}/batches is not found): "
        "use mode live with this endpoint, or batch with OpenAI's."
    )


def probe(base_url: str, api_key: str) -> int | None:
    """The status of `GET {base_url}/batches?limit=1`, None if there was no answer."""

    async def get() -> int:
        client = guarded_client(
            allowed_hosts=[host_of(url) for url in allowed_endpoints()],
            connections=1,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(PROBE_TIMEOUT_SECONDS),
        )
        async with client:
            response = await client.get(f"{base_url}/batches", params={"limit": 1})
            return response.status_code

    try:
        return run_sync(get)
    except httpx.HTTPError:
        return None


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end from sync code, in a thread of its own when this
    thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(make())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="llm-batch-call")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
