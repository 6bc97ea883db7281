"""Before spending money on an `llm` job: the exact prompt a row would be sent, and an
estimate of the whole run's tokens and cost.

Both work on a job's checked params (`sheets.run.SheetRun.check`), so the page shows what
a submit with the same form would do. The estimate renders every row's prompt (a
spaced sample of ESTIMATE_SAMPLE_ROWS on bigger runs) and leaves out rows answered
before (reused, free). Rows answered before with these options also calibrate it: their
stored usage (the API's reported tokens) gives tokens per character of prompt and the
mean answer length; a "Try on 5 rows" job makes such rows. Without any, it is rough:
characters / 4, and an answer as long as the longest category, else `max_tokens`, else
DEFAULT_COMPLETION_TOKENS. With `fields`, the JSON schema sent with each request counts
as prompt, and a rough answer is a JSON object of the fields. In batch mode (`mode=batch`)
the cost is at the batch price (CONVEYOR_LLM_BATCH_PRICE_FACTOR).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from sheets.models import Sheet
from sheets.processors import get_processor
from sheets.processors.builtins.llm.fields import parse_fields
from sheets.processors.builtins.llm.prompts import build_messages, request_format
from sheets.processors.builtins.llm.usage import cost_usd, model_price
from sheets.rows.reuse import ReuseKey, answered_before
from sheets.rows.source import load_rows

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and GPT-style tokenizers
DEFAULT_COMPLETION_TOKENS = 256
ESTIMATE_SAMPLE_ROWS = 5_000


@dataclass
class Estimate:
    first_row: int
    rows: int  # rows the run covers
    answered: int  # of those, answered before: reused, no request
    requests: int  # rows that will be sent
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: no price set for the model
    model: str
    calibration_rows: int  # rows answered before whose usage calibrated this (0: rough)
    tokens_per_char: float
    completion_per_answer: float
    measured: int  # rows whose prompts were rendered (all, or a sample)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def calibrated(self) -> bool:
        return self.calibration_rows > 0

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None

    @property
    def sampled(self) -> bool:
        return self.measured < self.rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "answered": self.answered,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "calibrated": self.calibrated,
        }


def options_of(params: dict[str, Any]) -> dict[str, Any]:
    """The options as the worker will run them (validated again from the params)."""
    processor = get_processor(params["processor"])
    return processor.validate_options(params["options"], params["columns"])


def prompt_for_row(sheet: Sheet, params: dict[str, Any], number: int) -> list[dict[str, str]]:
    """The chat messages (system, user) the job of `params` would send for row `number`."""
    rows = load_rows(sheet, [number], params["columns"], params.get("sources"))
    return build_messages(rows[0][1], options_of(params))


def format_sent(params: dict[str, Any]) -> str:
    """The `response_format` (a fields job's JSON schema) sent with each request, as
    indented JSON; "" when none is."""
    format_ = request_format(options_of(params))
    return json.dumps(format_, indent=2, ensure_ascii=False) if format_ else ""


def estimate_run(sheet: Sheet, params: dict[str, Any], owner_id: int) -> Estimate:
    """Tokens and cost of running the job of `params` (see the module docstring)."""
    options = options_of(params)
    first, count = params["start_row"], params["row_count"]
    step = max(1, math.ceil(count / ESTIMATE_SAMPLE_ROWS))
    numbers = list(range(first, first + count, step))
    rows = load_rows(sheet, numbers, params["columns"], params.get("sources"))
    key = ReuseKey(get_processor(params["processor"]), options)
    sized = [(key(row), prompt_chars(row, options)) for _, row in rows]
    found = answered_before({k for k, _ in sized}, owner_id)
    reuse = bool(options.get("reuse", True))
    to_send = [chars for k, chars in sized if not (reuse and k in found)]
    per_char, per_answer, calibration = calibrate(sized, found)
    if not calibration:
        per_char, per_answer = 1 / CHARS_PER_TOKEN, rough_completion_tokens(options)
    scale = count / max(1, len(rows))
    requests = round(len(to_send) * scale)
    prompt_tokens = round(sum(to_send) * per_char * scale)
    completion_tokens = round(requests * per_answer)
    cost = cost_usd(options["model"], prompt_tokens, completion_tokens)
    if cost is not None and options.get("mode") == "batch":
        cost *= settings.CONVEYOR_LLM_BATCH_PRICE_FACTOR  # the Batch API's price
    return Estimate(
        first_row=first,
        rows=count,
        answered=count - requests,
        requests=requests,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
        model=options["model"],
        calibration_rows=calibration,
        tokens_per_char=per_char,
        completion_per_answer=per_answer,
        measured=len(rows),
    )


def prompt_chars(row: dict[str, str], options: dict[str, Any]) -> int:
    format_ = request_format(options)
    schema = len(json.dumps(format_, ensure_ascii=False)) if format_ else 0
    return schema + sum(len(message["content"]) for message in build_messages(row, options))


def calibrate(
    sized: list[tuple[str, int]], found: dict[str, tuple[dict, dict | None]]
) -> tuple[float, float, int]:
    """Prompt tokens per character and completion tokens per answer, from rows answered
    before whose usage the API reported; `(0, 0, 0)` when there are none."""
    chars = prompt = completion = rows = 0
    for key, size in sized:
        usage = (found.get(key) or ({}, None))[1] or {}
        if size and "prompt_tokens" in usage and "completion_tokens" in usage:
            chars += size
            prompt += usage["prompt_tokens"]
            completion += usage["completion_tokens"]
            rows += 1
    if not rows:
        return 0.0, 0.0, 0
    return prompt / chars, completion / rows, rows


def rough_completion_tokens(options: dict[str, Any]) -> float:
    """An answer's tokens without a trial: a category's (the longest), else max_tokens
    (a ceiling, so a pessimistic guess), else DEFAULT_COMPLETION_TOKENS."""
    categories = [c for c in options["categories"].split(", ") if c]
    if categories:
        return math.ceil(max(map(len, categories)) / CHARS_PER_TOKEN)
    if fields := parse_fields(options.get("fields", "")):  # {"name": "a value", ...}
        return math.ceil(sum(len(f.name) + 16 for f in fields) / CHARS_PER_TOKEN)
    return options.get("max_tokens") or DEFAULT_COMPLETION_TOKENS


def price_text(model: str) -> str:
    """The model's price as the page says it, or "" when it has none."""
    price = model_price(model)
    if price is None:
        return ""
    return f"${price['input']:g} / ${price['output']:g} per million tokens (input / output)"
