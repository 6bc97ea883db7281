"""Answers already paid for: the key of a row's answer and the owner's earlier answers
with that key, so a reusable processor's row costs no request twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from jobs.public import JobContext
from sheets.models import RowResult
from sheets.processors import Processor, RowOutcome


class ReuseKey:
    """The key of a row's answer: the processor, its options (secrets and pacing aside)
    and the row's inputs, hashed. Called with a row, it gives that row's key."""

    # How to ask, or how much: not what is asked.
    IGNORED = frozenset(
        {"concurrency", "rpm", "tpm", "reuse", "mode", "budget_tokens", "budget_usd"}
        | {"per_host", "per_host_delay"}
    )
    # Options added after answers were stored, which ask nothing new while empty: left
    # out then, so those answers keep their keys (an llm answer from before `fields`).
    NEW_WHEN_SET = frozenset({"fields"})

    def __init__(self, processor: Processor, options: dict[str, Any]) -> None:
        secret = {option.name for option in processor.options if option.type == "secret"}
        meaning = {
            k: v
            for k, v in options.items()
            if k not in self.IGNORED | secret and not (k in self.NEW_WHEN_SET and not v)
        }
        self._base = hashlib.sha256(
            json.dumps([processor.name, meaning], sort_keys=True, default=str).encode()
        )

    def __call__(self, row: dict[str, str]) -> str:
        digest = self._base.copy()
        digest.update(json.dumps(row, sort_keys=True).encode())
        return digest.hexdigest()


class Reuse:
    """Answers already paid for: a row whose inputs, processor and options (secrets and
    pacing aside) equal a row the same owner had answered successfully takes that
    answer without a request. Every row's key is stored with its result for later runs.
    """

    def __init__(self, ctx: JobContext, processor: Processor, options: dict[str, Any]) -> None:
        self.enabled = processor.reusable and bool(options.get("reuse", True))
        self.owner_id = ctx.owner_id
        self.key = ReuseKey(processor, options)
        self.keys: dict[int, str] = {}

    def answered(self, rows: list[tuple[int, dict[str, str]]]) -> dict[int, RowOutcome]:
        """Outcomes of the rows answered before (one query), keyed by row number."""
        if not self.enabled or not rows:
            return {}
        for number, row in rows:
            self.keys[number] = self.key(row)
        wanted = {self.keys[number] for number, _ in rows}
        found = answered_before(wanted, self.owner_id)
        return {
            number: RowOutcome(
                number,
                dict(found[self.keys[number]][0]),
                "",
                0,
                0.0,
                reused=True,
                usage=found[self.keys[number]][1],
            )
            for number, _ in rows
            if self.keys[number] in found
        }


def answered_before(keys: set[str], owner_id: int | None) -> dict[str, tuple[dict, dict | None]]:
    """`{reuse key: (outputs, usage)}` of the owner's successful rows with these keys
    (one query per thousand keys: a batch is one query, a whole-sheet estimate a few)."""
    found: dict[str, tuple[dict, dict | None]] = {}
    wanted = sorted(keys)
    for start in range(0, len(wanted), 1000):
        earlier = RowResult.objects.filter(
            reuse_key__in=wanted[start : start + 1000], failed=False, job__owner_id=owner_id
        ).values_list("reuse_key", "outputs", "usage")
        found.update((key, (outputs, usage)) for key, outputs, usage in earlier)
    return found
