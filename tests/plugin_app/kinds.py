"""Job kinds from another app: shout words (one unit per word), burn CPU for a while."""

from __future__ import annotations

import time

from jobs.public import JobContext, job_kind


@job_kind("plugin.shout", label="Shout words", total_for=lambda params: len(params["words"]))
def shout(ctx: JobContext) -> dict:
    words = ctx.params["words"]
    for index in range(int(ctx.cursor or 0), len(words)):
        ctx.commit(cursor=index + 1, processed=index + 1, message=f"Shouted {words[index]}")
    return {"shouted": [word.upper() for word in words]}


@job_kind("plugin.spin", label="Burn CPU")
def spin(ctx: JobContext) -> dict:
    """Keep a core busy for `seconds` (a job whose CPU time is known to be non-zero)."""
    end = time.process_time() + float(ctx.params.get("seconds", 0.3))
    loops = 0
    while time.process_time() < end:
        loops += sum(range(1000)) and 1
    ctx.commit(processed=1, total=1)
    return {"loops": loops}
