"""The `llm` processor: each row through an OpenAI-compatible chat completions API.

Works with OpenAI, Ollama, vLLM, LM Studio and anything else serving
`POST {base_url}/chat/completions`. The prompt is a template over the row's columns
(`{column name}`; `{{` and `}}` for literal braces). With `categories` the answer must
be one of them and goes to the `category` column (a default prompt is used when none is
given); with `fields` (`name[:type]`, see `fields`) the answer is a JSON object whose typed
values go to one column per field; otherwise the answer goes to `answer`. `tokens` holds
the request's total token count when the API reports it; its prompt and completion tokens
(and their cost, at the operator's CONVEYOR_LLM_PRICES) are the row's usage, summed into
the job's `spent`.
Requests are paced to the API's own limit (`concurrency=auto`, capped by `rpm`/`tpm`)
across jobs and workers, with a breaker for outages (`sheets/processors/pacing.py`);
429, 5xx, timeouts and connection errors are retried; 401/403 stop the job.

The server's key (OPENAI_API_KEY) goes only to the server's endpoint (OPENAI_BASE_URL);
a user may type another base URL only if the operator listed it in
CONVEYOR_LLM_ALLOWED_BASE_URLS, and it gets only the key typed with it.

Here: the options, their validation and the row function. `prompts` builds the messages,
`endpoints` says where rows may go, `usage` what an answer cost, `fields` what a fields
answer must look like.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings

from sheets.processors import (
    USAGE_KEY,
    LiveLimit,
    Option,
    OptionsError,
    RowError,
    UpstreamRefused,
    extend_row_deadline,
    match_column,
    processor,
)
from sheets.processors.builtins.llm.batch_probe import batch_refusal
from sheets.processors.builtins.llm.endpoints import (
    NO_ENDPOINT_HELP,
    allowed_endpoints,
    endpoint_error,
    server_key,
)
from sheets.processors.builtins.llm.fields import (
    MODES,
    AnswerProblem,
    Field,
    check_answer,
    fields_text,
    parse_fields,
    repair_message,
)
from sheets.processors.builtins.llm.prompts import (
    answer_columns,
    build_messages,
    parse_categories,
    request_format,
    template_fields,
)
from sheets.processors.builtins.llm.usage import added_usage, model_price, usage_of
from sheets.processors.outbound import guarded_client, host_of, send_capped
from sheets.processors.pacing import Pace
from sheets.processors.ratelimit import RETRY_STATUSES

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
    Option(
        "fields",
        "Fields",
        "text",
        default="",
        help="Extract typed values, one column each: name[:type], comma- or "
        "newline-separated, e.g. company, headcount:int, remote:bool, "
        "size:enum(small|mid|large). Types: str, int, float, bool, enum.",
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
    Option(
        "concurrency",
        "Requests at once",
        "str",
        default="auto",
        help="auto: as many as the API's rate limit allows (it says so in its answers); "
        "or a number to pin it.",
    ),
    Option("rpm", "Requests per minute", "int", default=0, min=0, max=1_000_000, help="0: no cap."),
    Option(
        "tpm",
        "Tokens per minute",
        "int",
        default=0,
        min=0,
        max=1_000_000_000,
        help="0: no cap. A request counts its prompt (about 4 characters a token) and "
        "max tokens until the API reports what it used.",
    ),
    Option("temperature", "Temperature", "float", default=0.0, min=0, max=2),
    Option("max_tokens", "Max tokens per answer", "int", default=None, min=1, max=131_072),
    Option(
        "budget_tokens",
        "Budget (tokens)",
        "int",
        default=None,
        min=1,
        max=10**12,
        help="Pause the job once its answers used this many tokens (prompt + completion). "
        "Empty: no limit.",
    ),
    Option(
        "budget_usd",
        "Budget (USD)",
        "float",
        default=None,
        min=0.01,
        max=1_000_000,
        help="Pause the job once it cost this much, at the operator's prices. Empty: no limit.",
    ),
    Option(
        "mode",
        "Mode",
        "choice",
        default="live",
        choices=("live", "batch"),
        help="live: each row now, at the normal price. batch: through the provider's "
        "Batch API (OpenAI's), at half the price, answered within 24 hours.",
    ),
]  # and `reuse`, which `reusable=True` adds


def parse_concurrency(raw: Any) -> int | str:
    """ "auto" or a whole number from 1 to CONVEYOR_LLM_MAX_CONCURRENCY; ValueError else."""
    ceiling = settings.CONVEYOR_LLM_MAX_CONCURRENCY
    text = str(raw).strip().lower()
    if text in ("", "auto"):
        return "auto"
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= ceiling:
        raise ValueError(f"Enter auto, or a whole number from 1 to {ceiling}.")
    return number


def validate_llm(options: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    concurrency: int | str = "auto"
    try:
        concurrency = parse_concurrency(options.get("concurrency", "auto"))
    except ValueError as exc:
        errors["concurrency"] = str(exc)
    if not options["base_url"]:
        errors["base_url"] = NO_ENDPOINT_HELP
    elif message := endpoint_error(options["base_url"]):
        errors["base_url"] = message
    categories = parse_categories(options["categories"])
    if len(categories) == 1:
        errors["categories"] = "Give at least two categories, separated by commas."
    try:
        wanted = parse_fields(options["fields"])
    except ValueError as exc:
        errors["fields"] = str(exc)
        wanted = []
    if wanted and categories:
        errors["fields"] = (
            "Give categories or fields, not both (a category can be a field: kind:enum(a|b|c))."
        )
    elif message := field_clash(wanted, input_columns):
        errors["fields"] = message
    if not options["prompt"].strip() and not categories and not wanted:
        errors["prompt"] = (
            "Write a prompt, or give categories to choose from. Or give fields to extract."
        )
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
    batch = options["mode"] == "batch" and "base_url" not in errors
    if batch and (refused := batch_refusal(options["base_url"], options["api_key"])):
        errors["mode"] = refused
    if options["budget_usd"] and model_price(options["model"]) is None:
        errors["budget_usd"] = (
            f"The server has no price for {options['model']} (CONVEYOR_LLM_PRICES), so a "
            "cost cannot be counted: set a budget in tokens instead."
        )
    if errors:
        raise OptionsError(errors)
    return {
        **options,
        "categories": ", ".join(categories),
        "fields": fields_text(wanted),
        "concurrency": concurrency,
    }


def field_clash(fields: list[Field], input_columns: list[str]) -> str:
    """Why fields named like input columns cannot be output columns, or ""."""
    clashes = [f.name for f in fields if match_column(f.name, input_columns)]
    if not clashes:
        return ""
    return (
        f"{', '.join(clashes)} {'is an input column' if len(clashes) == 1 else 'are input columns'}"
        "; an output column needs a name of its own (rename the field)."
    )


def llm_outputs(options: dict[str, Any], input_columns: list[str]) -> list[str]:
    if fields := parse_fields(options.get("fields", "")):
        return [*(f.name for f in fields), "tokens"]
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
    if options.get("mode") == "batch":
        text += (
            " Batch mode: through its Batch API, at half the price, answered within 24 hours;"
            " the job waits for the batches without holding a worker."
        )
    if not (options.get("api_key") or server_key(base_url)):
        text += (
            " No API key is configured: fine for a local server; a hosted API needs one "
            "(OPENAI_API_KEY in the environment, or the form)."
        )
    return text


# --- the row function ----------------------------------------------------------


@dataclass
class FormatChoice:
    """How this session asks for fields (fields.MODES): the best way, until the endpoint
    answers 400 to it; `settled` once an answer came back, so later rows do not probe."""

    mode: str = MODES[0]
    settled: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class ChatSession:
    client: httpx.AsyncClient
    url: str
    pace: Pace
    formats: FormatChoice = field(default_factory=FormatChoice)

    @property
    def in_flight_limit(self) -> LiveLimit:
        return self.pace.limit  # the runner starts rows up to it; the pace steers it

    def pace_status(self) -> str:
        return self.pace.status()


def estimated_tokens(body: dict[str, Any]) -> int:
    """What a request counts against a tokens/min limit before its answer says: its
    messages at about 4 characters a token, plus the answer's ceiling."""
    chars = sum(len(str(m.get("content", ""))) for m in body["messages"])
    return chars // 4 + 1 + (body.get("max_tokens") or 16)


def reported_tokens(response: httpx.Response) -> int | None:
    try:
        tokens = response.json()["usage"]["total_tokens"]
    except (ValueError, KeyError, TypeError):
        return None
    return tokens if isinstance(tokens, int) else None


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
    if fields := parse_fields(options.get("fields", "")):
        return await answer_fields(row, options, session, fields)
    body = request_body(options, build_messages(row, options))
    response = await post_chat(session, body)
    raise_for_status(response)
    answer, tokens, usage = parse_completion(response, options["model"])
    return answer_columns(answer, options, tokens, usage)


def request_body(
    options: dict[str, Any], messages: list[dict[str, str]], mode: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": options["model"],
        "messages": messages,
        "temperature": options["temperature"],
    }
    if options.get("max_tokens"):
        body["max_tokens"] = options["max_tokens"]
    if mode and (format_ := request_format(options, mode)):
        body["response_format"] = format_
    return body


async def post_chat(session: ChatSession, body: dict[str, Any]) -> httpx.Response:
    """The API's answer to `body` (any status), paced, 429s, 5xx and network errors
    retried; `UpstreamRefused` for a 401/403 (every row would get it: the job stops)."""
    cap = settings.CONVEYOR_LLM_MAX_RESPONSE_BYTES
    too_big = f"the API's answer is larger than {cap:,} bytes (CONVEYOR_LLM_MAX_RESPONSE_BYTES)"
    client = session.client
    tokens = estimated_tokens(body)
    response = await session.pace.send(
        lambda: send_capped(
            client, client.build_request("POST", session.url, json=body), cap, too_big
        ),
        tokens=tokens,
        attempts=settings.CONVEYOR_LLM_MAX_ATTEMPTS,
    )
    if response.status_code in (401, 403):
        raise UpstreamRefused(f"HTTP {response.status_code} from the API: {api_message(response)}")
    used = reported_tokens(response) if response.status_code < 400 else None
    if used is not None and (correction := session.pace.correct_tokens(tokens, used)):
        await correction
    return response


def raise_for_status(response: httpx.Response, usage: dict | None = None) -> None:
    if response.status_code >= 400:
        attempts = settings.CONVEYOR_LLM_MAX_ATTEMPTS
        after = f" after {attempts} attempts" if response.status_code in RETRY_STATUSES else ""
        raise RowError(
            f"HTTP {response.status_code} from the API{after}: {api_message(response)}",
            usage=usage,
        )


# --- fields: a JSON answer, typed -----------------------------------------------------


async def answer_fields(
    row: dict[str, str], options: dict[str, Any], session: ChatSession, fields: list[Field]
) -> dict:
    """The row's fields: asked for in the session's way (found by the first row), checked
    against their types; a wrong answer gets one repair request, then is a row error."""
    formats = session.formats
    if formats.settled:
        mode = formats.mode
        messages = build_messages(row, options, mode)
        response = await post_chat(session, request_body(options, messages, mode))
    else:
        # One row finds the way; the others wait for it, and like a wait for a rate-limit
        # slot that wait does not count against their row timeout.
        loop = asyncio.get_running_loop()
        extend_row_deadline(FORMAT_WAIT_ALLOWANCE)
        began = loop.time()
        async with formats.lock:
            extend_row_deadline(loop.time() - began - FORMAT_WAIT_ALLOWANCE)
            mode, messages, response = await find_format(row, options, session)
    raise_for_status(response)
    answer, tokens, usage = parse_completion(response, options["model"])
    try:
        values = check_answer(answer, fields)
    except AnswerProblem as problem:
        messages = [
            *messages,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": repair_message(str(problem))},
        ]
        response = await post_chat(session, request_body(options, messages, mode))
        raise_for_status(response, usage)
        try:
            answer, more_tokens, more_usage = parse_completion(response, options["model"])
        except RowError as exc:
            raise RowError(str(exc), usage=usage) from None
        usage = added_usage(usage, more_usage)
        tokens = tokens + more_tokens if tokens != "" and more_tokens != "" else ""
        try:
            values = check_answer(answer, fields)
        except AnswerProblem as again:
            raise RowError(str(again), usage=usage) from None  # paid for all the same
    return {**values, "tokens": tokens, USAGE_KEY: usage}


async def find_format(
    row: dict[str, str], options: dict[str, Any], session: ChatSession
) -> tuple[str, list[dict[str, str]], httpx.Response]:
    """Ask in the session's way, stepping down (fields.MODES) while the endpoint answers
    400 to it. A 400 that names the response format steps down at once; another is
    tried once the next way down, and stays the row's error if that fails too."""
    formats = session.formats
    while True:
        mode = formats.mode
        messages = build_messages(row, options, mode)
        response = await post_chat(session, request_body(options, messages, mode))
        if formats.settled or response.status_code != 400 or mode == MODES[-1]:
            break
        lower = MODES[MODES.index(mode) + 1]
        if not about_format(response):
            messages_lower = build_messages(row, options, lower)
            trial = await post_chat(session, request_body(options, messages_lower, lower))
            if trial.status_code == 400:
                return mode, messages, response
            mode, messages, response = lower, messages_lower, trial
            formats.mode = lower
            break
        formats.mode = lower
    if response.status_code < 400:
        formats.settled = True
    return mode, messages, response


FORMAT_WAIT_ALLOWANCE = 3600.0  # seconds a row may wait for the first row's answer
FORMAT_WORDS = ("response_format", "response format", "json_schema", "json_object", "schema")


def about_format(response: httpx.Response) -> bool:
    """Whether a 400 says the endpoint does not take the response format asked for."""
    message = api_message(response).casefold()
    return any(word in message for word in FORMAT_WORDS)


@llm.session
async def chat_session(options: dict[str, Any]) -> AsyncIterator[ChatSession]:
    base_url = (options.get("base_url") or settings.CONVEYOR_LLM_BASE_URL).rstrip("/")
    api_key = options.get("api_key") or server_key(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    concurrency = options.get("concurrency") or "auto"
    pace = Pace(
        base_url,
        api_key,
        host=host_of(base_url),
        concurrency=concurrency,
        rpm=options.get("rpm") or 0,
        tpm=options.get("tpm") or 0,
        hold=settings.CONVEYOR_LLM_TIMEOUT + 10,
    )
    ceiling = settings.CONVEYOR_LLM_MAX_CONCURRENCY if concurrency == "auto" else concurrency
    timeout = httpx.Timeout(settings.CONVEYOR_LLM_TIMEOUT, connect=10.0)
    # Only operator-listed endpoints get here (validate_llm); their hosts may be private
    # (a local Ollama), anything else they redirect or resolve to may not.
    endpoints = [host_of(url) for url in allowed_endpoints()]
    client = guarded_client(
        allowed_hosts=endpoints,
        connections=int(ceiling) * 2,
        headers=headers,
        timeout=timeout,
    )
    try:
        async with client:
            yield ChatSession(client, f"{base_url}/chat/completions", pace)
    finally:
        await pace.aclose()


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
