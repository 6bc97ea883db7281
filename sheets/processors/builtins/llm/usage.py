"""What an answer cost: its tokens as the API reported them, one request, and its price
in USD at the operator's CONVEYOR_LLM_PRICES (shown only where the price is known)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


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


def added_usage(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """Two answers' usage as one (a row that took a repair request pays for both)."""
    return {name: first.get(name, 0) + second.get(name, 0) for name in {*first, *second}}
