"""Spending ceilings of a sheet job: its own (the `budget_tokens` and `budget_usd`
options) and its owner's for the month (CONVEYOR_MONTHLY_BUDGET_TOKENS and _USD).

The pipeline asks `Budget.reached(spent)` before it sends each row, with what the job
has spent so far (committed, and answered but not yet committed). At a ceiling no new
row starts; the rows in flight finish (their answers are paid for) and the job pauses
saying which ceiling it reached. So a job overshoots by at most one request per row in
flight. Tokens are the prompt and completion tokens the API reported; USD is counted
only for models the operator priced (CONVEYOR_LLM_PRICES), which `budget_usd` needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from jobs.models import Job

REACHED = "Budget reached: "  # how the message of a job paused at a ceiling begins
TOKEN_KEYS = ("prompt_tokens", "completion_tokens")
USD_KEY = "cost_usd"


def tokens_of(spent: dict[str, Any]) -> float:
    return sum(spent.get(key, 0) for key in TOKEN_KEYS)


def amount_of(what: str, spent: dict[str, Any]) -> float:
    return tokens_of(spent) if what == "tokens" else spent.get(USD_KEY, 0)


def shown(what: str, value: float) -> str:
    return f"{value:,.0f} tokens" if what == "tokens" else f"${value:,.2f}"


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent_this_month(owner_id: int | None, *, besides: int | None = None) -> dict[str, float]:
    """What the owner's jobs created this month spent, summed (`besides`: leave that job
    out). One query over the owner's jobs of the month (an index covers it)."""
    total: dict[str, float] = {}
    if owner_id is None:
        return total
    rows = Job.objects.filter(owner_id=owner_id, created_at__gte=month_start())
    for spent in rows.exclude(pk=besides).values_list("spent", flat=True):
        for key in (*TOKEN_KEYS, USD_KEY):
            value = (spent or {}).get(key)
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return total


def monthly_ceilings() -> dict[str, float]:
    """The operator's monthly ceilings per user: {"tokens": n, "usd": x}, those set."""
    ceilings = {
        "tokens": settings.CONVEYOR_MONTHLY_BUDGET_TOKENS,
        "usd": settings.CONVEYOR_MONTHLY_BUDGET_USD,
    }
    return {what: limit for what, limit in ceilings.items() if limit}


@dataclass(frozen=True)
class Ceiling:
    what: str  # "tokens" or "usd"
    limit: float
    name: str  # where it is set, as the user knows it
    before: float = 0.0  # spent elsewhere that counts against it (the month's other jobs)
    raise_hint: str = "Raise or lift the job's budget and resume it to go on."


@dataclass(frozen=True)
class Budget:
    ceilings: tuple[Ceiling, ...]

    @classmethod
    def of_job(cls, job_id: int, owner_id: int | None, options: dict[str, Any]) -> Budget | None:
        """The ceilings that apply to this job, or None when there are none."""
        ceilings = [
            Ceiling(what, float(options[option]), f"the job's {option}")
            for what, option in (("tokens", "budget_tokens"), ("usd", "budget_usd"))
            if options.get(option)
        ]
        if monthly := monthly_ceilings():
            month = spent_this_month(owner_id, besides=job_id)
            hint = "Resume it next month, or ask the operator for a higher ceiling."
            ceilings += [
                Ceiling(what, limit, "your monthly budget", amount_of(what, month), hint)
                for what, limit in monthly.items()
            ]
        return cls(tuple(ceilings)) if ceilings else None

    def reached(self, *spent: dict[str, Any]) -> str:
        """Why no more rows may be sent with these amounts spent so far (summed), or ""
        while they may."""
        for ceiling in self.ceilings:
            used = ceiling.before + sum(amount_of(ceiling.what, part) for part in spent)
            if used >= ceiling.limit:
                return (
                    f"{REACHED}{shown(ceiling.what, used)} spent of "
                    f"{ceiling.name} of {shown(ceiling.what, ceiling.limit)}. "
                    f"{ceiling.raise_hint}"
                )
        return ""
