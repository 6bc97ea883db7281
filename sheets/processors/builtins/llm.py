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
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from sheets.processors import USAGE_KEY, Option, OptionsError, RowError, match_column, processor
from sheets.processors.outbound import guarded_client, host_of, send_capped
from sheets.processors.ratelimit import RETRY_STATUSES, RateLimiter, send_with_retries

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)
ANSWER_WRAPPING = "\"'`*_ \t\n"
TRAILING_PUNCTUATION = ".!?,;:" + ANSWER_WRAPPING

NO_ENDPOINT_HELP = (
    "No LLM endpoint is configured. Set OPENAI_BASE_URL (and OPENAI_API_KEY for a hosted "
    "API) in the server's environment, or list endpoints users may type below in "
    "CONVEYOR_LLM_ALLOWED_BASE_URLS. "
    "A local OpenAI-compatible server works too: Ollama at http://127.0.0.1:11434/v1, "
    "LM Studio at http://127.0.0.1:1234/v1, vLLM at http://127.0.0.1:8000/v1. "
    "For OpenAI itself use https://api.openai.com/v1 with an API key."
)

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


# --- prompts -----------------------------------------------------------------


def template_fields(template: str) -> list[str]:
    """The column names a prompt template uses; ValueError for broken braces."""
    names = [match[1].strip() for match in PLACEHOLDER.finditer(template) if match[1] is not None]
    leftover = PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise ValueError("Unmatched { or } in the prompt; write {{ or }} for a literal brace.")
    if "" in names:
        raise ValueError("Empty {} in the prompt; put a column name inside the braces.")
    return names


def render_prompt(template: str, row: dict[str, str]) -> str:
    """Fill `{column}` placeholders from the row: plain text substitution, nothing else."""

    def replace(match: re.Match[str]) -> str:
        if match[0] in ("{{", "}}"):
            return match[0][0]
        column = match_column(match[1].strip(), list(row))
        return row.get(column, "") if column else ""

    return PLACEHOLDER.sub(replace, template)


def parse_categories(text: str) -> list[str]:
    names = [" ".join(part.split()) for part in re.split(r"[,\n]", text or "")]
    unique: dict[str, str] = {}
    for name in names:
        if name:
            unique.setdefault(name.casefold(), name)
    return list(unique.values())


def build_messages(row: dict[str, str], options: dict[str, Any]) -> list[dict[str, str]]:
    categories = parse_categories(options["categories"])
    if options["prompt"].strip():
        question = render_prompt(options["prompt"], row)
    else:
        fields = "\n".join(f"{column}: {value}" for column, value in row.items() if value)
        question = f"Which category fits this record?\n\n{fields}"
    messages = [{"role": "user", "content": question}]
    if categories:
        system = (
            "You sort records into categories. Reply with exactly one of these "
            f"categories and nothing else: {', '.join(categories)}."
        )
        messages.insert(0, {"role": "system", "content": system})
    return messages


def normalise_answer(text: str) -> str:
    text = text.strip(ANSWER_WRAPPING).rstrip(TRAILING_PUNCTUATION).strip(ANSWER_WRAPPING)
    return " ".join(text.split()).casefold()


def match_category(answer: str, categories: list[str]) -> str:
    wanted = normalise_answer(answer)
    for category in categories:
        if normalise_answer(category) == wanted:
            return category
    shown = " ".join(answer.split())
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise RowError(
        f'the model answered "{shown}", which is not one of the categories '
        f"({', '.join(categories)})"
    )


# --- endpoints -----------------------------------------------------------------


def endpoint(url: str) -> str:
    """A base URL in one spelling (scheme, host, port, path), "" if it is not a plain
    http(s) URL: user:password@ and odd ports could make one URL look like another."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path.rstrip('/')}"


def is_server_endpoint(url: str) -> bool:
    server = endpoint(settings.CONVEYOR_LLM_BASE_URL)
    return bool(server) and endpoint(url) == server


def allowed_endpoints() -> list[str]:
    return [
        u for u in [settings.CONVEYOR_LLM_BASE_URL, *settings.CONVEYOR_LLM_ALLOWED_BASE_URLS] if u
    ]


def endpoint_error(url: str) -> str:
    if endpoint(url) and endpoint(url) in {endpoint(u) for u in allowed_endpoints()}:
        return ""
    allowed = ", ".join(allowed_endpoints()) or "none yet (the operator sets OPENAI_BASE_URL)"
    return (
        "This server only sends rows to the LLM endpoints its operator allows "
        f"(CONVEYOR_LLM_ALLOWED_BASE_URLS): {allowed}."
    )


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


def server_key(base_url: str) -> str:
    """OPENAI_API_KEY, for OPENAI_BASE_URL only: never sent to a URL a user typed."""
    return settings.CONVEYOR_LLM_API_KEY if is_server_endpoint(base_url) else ""


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


# --- usage and prices -----------------------------------------------------------------


def usage_of(reported: dict[str, Any], model: str) -> dict[str, float]:
    """One answer's cost from the API's `usage`: its tokens (when reported), one
    request, and `cost_usd` when the operator set a price for the model."""
    usage: dict[str, float] = {}
    for name in ("prompt_tokens", "completion_tokens"):
        value = reported.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            usage[name] = value
    usage["requests"] = 1
    cost = cost_usd(model, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
    if cost is not None:
        usage["cost_usd"] = cost
    return usage


def model_price(model: str) -> dict[str, float] | None:
    """The operator's price of a model (USD per million input and output tokens) from
    CONVEYOR_LLM_PRICES, or None: a cost is shown only when the price is known."""
    return settings.CONVEYOR_LLM_PRICES.get(model)


def cost_usd(model: str, prompt_tokens: float, completion_tokens: float) -> float | None:
    price = model_price(model)
    if price is None:
        return None
    return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1_000_000
