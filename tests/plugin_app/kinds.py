"""A job kind from another app: shout each word of `words`, one unit per word."""

from __future__ import annotations

from jobs.engine.context import JobContext
from jobs.engine.kinds import job_kind


@job_kind("plugin.shout", label="Shout words", total_for=lambda params: len(params["words"]))
def shout(ctx: JobContext) -> dict:
    words = ctx.params["words"]
    for index in range(int(ctx.cursor or 0), len(words)):
        ctx.commit(cursor=index + 1, processed=index + 1, message=f"Shouted {words[index]}")
    return {"shouted": [word.upper() for word in words]}
