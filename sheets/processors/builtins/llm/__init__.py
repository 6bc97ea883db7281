"""The `llm` processor: each row through an OpenAI-compatible chat completions API.

Works with OpenAI, Ollama, vLLM, LM Studio and anything else serving
`POST {base_url}/chat/completions`. The prompt is a template over the row's columns
(`{column name}`; `{{` and `}}` for literal braces). With `categories` the answer must
be one of them and goes to the `category` column (a default prompt is used when none is
given); without, the answer goes to `answer`. `tokens` holds the request's total token
count when the API reports it; its prompt and completion tokens (and their cost, at the
operator's CONVEYOR_LLM_PRICES) are the row's usage, summed into the job's `spent`.
Requests per minute are limited across workers (`sheets/processors/ratelimit.py`); 429,
5xx, timeouts and connection errors are retried.

The server's key (OPENAI_API_KEY) goes only to the server's endpoint (OPENAI_BASE_URL);
a user may type another base URL only if the operator listed it in
CONVEYOR_LLM_ALLOWED_BASE_URLS, and it gets only the key typed with it.

Here: the options, their validation and the row function. `prompts` builds the messages,
`endpoints` says where rows may go, `usage` what an answer cost.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from sheets.processors import USAGE_KEY, Option, OptionsError, RowError, match_column, processor
from sheets.processors.builtins.llm.endpoints import (
    NO_ENDPOINT_HELP,
    allowed_endpoints,
    endpoint_error,
    server_key,
)
from sheets.processors.builtins.llm.prompts import (
    build_messages,
    match_category,
    parse_categories,
    template_fields,
)
from sheets.processors.builtins.llm.usage import usage_of
from sheets.processors.outbound import guarded_client, host_of, send_capped
from sheets.processors.ratelimit import RETRY_STATUSES, RateLimiter, send_with_retries

THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)

OPTIONS = [
    Option(
        "prompt",
        "Prompt",
        "text",
        default="",
        help="Sent for each row; {column name} is replaced by the row's value. "
        "Optional when categories are given.",
    ),
    Option(
        "categories",
        "Categories",
        "str",
        default="",
        help="Comma-separated. The answer must be one of them (column 'category').",
    ),
    Option("model", "Model", "str", default=lambda: settings.CONVEYOR_LLM_MODEL, required=True),
    Option(
        "base_url",
        "API base URL",
        "url",
        default=lambda: settings.CONVEYOR_LLM_BASE_URL,
        help="e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama).",
    ),
    Option(
        "api_key",
        "API key",
        "secret",
        default="",
        help="Leave empty to use the server's key (sent only to the server's own base URL; "
        "local servers need none).",
    ),
    Option("concurrency", "Requests at once", "int", default=4, min=1, max=64),
    Option(
        "rpm", "Requests per minute", "int", default=0, min=0, max=100_000, help="0: unlimited."
    ),
    Option("temperature", "Temperature", "float", default=0.0, min=0, max=2),
    Option("max_tokens", "Max tokens per answer", "int", default=None, min=1, max=131_072),
]  # and `reuse`, which `reusable=True` adds


def validate_llm(options: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    if not options["base_url"]:
        errors["base_url"] = NO_ENDPOINT_HELP
    elif message := endpoint_error(options["base_url"]):
        errors["base_url"] = message
    categories = parse_categories(options["categories"])
    if len(categories) == 1:
        errors["categories"] = "Give at least two categories, separated by commas."
    if not options["prompt"].strip() and not categories:
        errors["prompt"] = "Write a prompt, or give categories to choose from."
    try:
        fields = template_fields(options["prompt"])
    except ValueError as exc:
        errors["prompt"] = str(exc)
        fields = []
    unknown = [name for name in fields if input_columns and not match_column(name, input_columns)]
    if unknown:
        errors["prompt"] = (
            f"The prompt uses {', '.join('{' + name + '}' for name in unknown)}, which "
            f"{'is not a column' if len(unknown) == 1 else 'are not columns'}. "
            f"Columns are: {', '.join(input_columns)}."
        )
    if errors:
        raise OptionsError(errors)
    return {**options, "categories": ", ".join(categories)}


def llm_outputs(options: dict[str, Any], input_columns: list[str]) -> list[str]:
    return ["category" if options.get("categories") else "answer", "tokens"]


def llm_notice(options: dict[str, Any]) -> str:
    """What a run with these options does (where rows go), or why it cannot run yet."""
    base_url = options.get("base_url") or settings.CONVEYOR_LLM_BASE_URL
    if not base_url:
        return NO_ENDPOINT_HELP
    if options.get("base_url") and (refused := endpoint_error(base_url)):
        return refused
    model = options.get("model") or settings.CONVEYOR_LLM_MODEL
    text = f"Each row is sent to {base_url} (model {model})."
    if not (options.get("api_key") or server_key(base_url)):
        text += (
            " No API key is configured: fine for a local server; a hosted API needs one "
            "(OPENAI_API_KEY in the environment, or the form)."
        )
    return text


# --- the row function ----------------------------------------------------------


@dataclass
class ChatSession:
    client: httpx.AsyncClient
    url: str
    limiter: RateLimiter | None


@processor(
    "llm",
    reusable=True,
    label="LLM: categorise or transform",
    description="Sends each row to an OpenAI-compatible chat model with your prompt; "
    "optionally checks the answer against a fixed list of categories.",
    options=OPTIONS,
    outputs=llm_outputs,
    validate=validate_llm,
    notice=llm_notice,
)
async def llm(row: dict[str, str], options: dict[str, Any], session: ChatSession) -> dict:
    body: dict[str, Any] = {
        "model": options["model"],
        "messages": build_messages(row, options),
        "temperature": options["temperature"],
    }
    if options.get("max_tokens"):
        body["max_tokens"] = options["max_tokens"]
    attempts = settings.CONVEYOR_LLM_MAX_ATTEMPTS
    cap = settings.CONVEYOR_LLM_MAX_RESPONSE_BYTES
    too_big = f"the API's answer is larger than {cap:,} bytes (CONVEYOR_LLM_MAX_RESPONSE_BYTES)"
    client = session.client
    response = await send_with_retries(
        lambda: send_capped(
            client, client.build_request("POST", session.url, json=body), cap, too_big
        ),
        attempts=attempts,
        limiter=session.limiter,
    )
    if response.status_code >= 400:
        after = f" after {attempts} attempts" if response.status_code in RETRY_STATUSES else ""
        raise RowError(f"HTTP {response.status_code} from the API{after}: {api_message(response)}")
    answer, tokens, usage = parse_completion(response, options["model"])
    categories = parse_categories(options["categories"])
    if not categories:
        return {"answer": answer, "tokens": tokens, USAGE_KEY: usage}
    try:
        category = match_category(answer, categories)
    except RowError as exc:
        raise RowError(str(exc), usage=usage) from None  # paid for all the same
    return {"category": category, "tokens": tokens, USAGE_KEY: usage}


@llm.session
async def chat_session(options: dict[str, Any]) -> AsyncIterator[ChatSession]:
    base_url = (options.get("base_url") or settings.CONVEYOR_LLM_BASE_URL).rstrip("/")
    api_key = options.get("api_key") or server_key(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limiter = None
    if options.get("rpm"):
        key = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]
        limiter = RateLimiter(options["rpm"], key=f"llm:{key}")
    timeout = httpx.Timeout(settings.CONVEYOR_LLM_TIMEOUT, connect=10.0)
    # Only operator-listed endpoints get here (validate_llm); their hosts may be private
    # (a local Ollama), anything else they redirect or resolve to may not.
    endpoints = [host_of(url) for url in allowed_endpoints()]
    client = guarded_client(
        allowed_hosts=endpoints,
        connections=options["concurrency"] * 2,
        headers=headers,
        timeout=timeout,
    )
    try:
        async with client:
            yield ChatSession(client, f"{base_url}/chat/completions", limiter)
    finally:
        if limiter is not None:
            await limiter.aclose()


def api_message(response: httpx.Response) -> str:
    """The API's own error message (OpenAI, Ollama and vLLM shapes), else the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error", data) if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail")
    text = str(error) if error else response.text.strip() or response.reason_phrase
    return text if len(text) <= 300 else text[:297] + "..."


def parse_completion(response: httpx.Response, model: str) -> tuple[str, int | str, dict]:
    """The answer, its total tokens ("" when not reported) and its usage (tokens, cost)."""
    try:
        data = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RowError(f"unexpected response from the API: {response.text[:200]}") from None
    if not isinstance(content, str) or not content.strip():
        raise RowError("the API returned an empty answer")
    reported = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = reported.get("total_tokens")
    answer = THINKING.sub("", content).strip()
    return answer, tokens if isinstance(tokens, int) else "", usage_of(reported, model)
