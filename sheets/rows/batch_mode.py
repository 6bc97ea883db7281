"""An `llm` job in batch mode (`mode=batch`): its rows go to the provider's Batch API in
chunks (CONVEYOR_LLM_BATCH_ROWS rows, one batch each), and the job waits for them
without holding a worker (`Postponed`), its message saying how far they are.

Restart safety: a chunk's intent (where its rows start, how many, a random marker) is
committed in the job's cursor before its batch is created, and the marker goes into the
batch's metadata. A slice that finds an intent without a batch id looks the batch up
by its marker before creating one, so a crash anywhere (kill -9 included) never makes a
second batch for a chunk. Chunks are committed in row order, like live rows: the
cursor's `next` is still the first row without a result, and `sent` where the next
chunk starts. Rows answered before (`Reuse`) are not sent; cancelling the job cancels
its open batches (`cancel_open_batches`, from the kind's `on_end`).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from contextlib import suppress
from typing import Any

from django.conf import settings

from jobs.public import JobContext, PauseJob, PermanentError, Postponed, SliceDone
from sheets.processors import USAGE_KEY, Processor, RowError, RowOutcome
from sheets.processors.builtins.llm.batch import (
    FINISHED,
    MARKER,
    BatchAPI,
    BatchAPIError,
    batch_line,
    batch_status_text,
    custom_id,
    line_outputs,
)
from sheets.rows.budget import Budget
from sheets.rows.pipeline import batch_spent
from sheets.rows.results import build_results, store_results
from sheets.rows.reuse import Reuse
from sheets.rows.source import RowSource

log = logging.getLogger(__name__)
CANCEL_TIMEOUT_SECONDS = 10.0  # a cancel may run in a web request: it waits no longer
UNANSWERED = {
    "completed": "the batch finished without an answer for this row",
    "expired": "the batch expired (24 hours) before this row was answered",
    "cancelled": "the batch was cancelled before this row was answered",
}


def run_batches(
    ctx: JobContext, source: RowSource, processor: Processor, options: dict[str, Any]
) -> None:
    """Send, wait for and store the job's rows batch by batch; returns when every row of
    the job has a result, raises `Postponed` while batches are still out."""
    with BatchAPI(options) as api:
        BatchRun(ctx, source, processor, options, api).step()


def cancel_open_batches(chunks: list[dict[str, Any]], options: dict[str, Any]) -> list[str]:
    """A cancelled job's batches still running at the provider, cancelled (best effort:
    the job is cancelled whatever the API answers); the ids cancelled. Called from the
    sheet kind's `on_end`, whether a worker stopped the job or it was waiting."""
    cancelled = []
    with BatchAPI(options, timeout=CANCEL_TIMEOUT_SECONDS) as api:
        for chunk in chunks:
            if chunk.get("id") and chunk.get("status") not in FINISHED:
                try:
                    api.cancel(chunk["id"])
                except BatchAPIError as exc:
                    # Its status only: an API's message may quote the key.
                    log.warning("could not cancel batch %s: HTTP %s", chunk["id"], exc.status)
                    continue
                cancelled.append(chunk["id"])
    return cancelled


class BatchRun:
    """One slice of a batch-mode job: its chunks (from the cursor) moved on as far as
    they go: new ones opened, open ones polled, finished ones stored in order."""

    def __init__(
        self,
        ctx: JobContext,
        source: RowSource,
        processor: Processor,
        options: dict[str, Any],
        api: BatchAPI,
    ) -> None:
        cursor = ctx.cursor or {}
        self.ctx, self.source, self.options, self.api = ctx, source, options, api
        self.reuse = Reuse(ctx, processor, options)
        self.chunks: list[dict[str, Any]] = [dict(c) for c in cursor.get("chunks", [])]
        self.done_to = source.next  # the first row without a result (the cursor's `next`)
        source.rewind(cursor.get("sent", source.next))
        self.lines: dict[str, list[dict]] = {}  # a chunk's lines, made when it was opened
        self.budget = Budget.of_job(ctx.job_id, ctx.owner_id, options)
        self.exhausted = False  # no row left to send

    # -- the slice ------------------------------------------------------------------
    def step(self) -> None:
        try:
            while True:
                while self.may_open() and self.open_chunk():
                    pass
                for chunk in self.chunks:
                    self.advance(chunk)
                finished = 0
                while self.chunks and self.chunks[0]["status"] in (*FINISHED, "none"):
                    self.finish(self.chunks[0])
                    finished += 1
                if not self.chunks and not self.source_left():
                    return
                if not self.chunks and (reason := self.over_budget()):
                    raise PauseJob(reason)
                if not finished:
                    break  # the first open batch is still running: wait for it
        except BatchAPIError as exc:
            if not exc.transient:
                raise PermanentError(f"The Batch API refused: {self.ctx.scrub(str(exc))}") from None
            problem = self.ctx.scrub(str(exc))
            self.wait(f"{self.summary()}; the Batch API did not answer ({problem}): trying again")
        self.wait(self.summary())

    def wait(self, reason: str) -> None:
        """End the slice waiting for the batches (no worker held): the chunks saved,
        `reason` the job's message. A slice that is over waits all the same."""
        with suppress(SliceDone):
            self.save()
        raise Postponed(settings.CONVEYOR_LLM_BATCH_POLL_SECONDS, reason)

    def source_left(self) -> bool:
        return not self.exhausted and self.source.next < self.source.end

    def may_open(self) -> bool:
        return len(self.chunks) < settings.CONVEYOR_LLM_BATCH_OPEN and not self.over_budget()

    def over_budget(self) -> str:
        """Why no new batch may be sent (a budget reached by what the job spent), or "".
        Checked before each batch: a job overshoots by at most its open batches."""
        return self.budget.reached(self.ctx.spent) if self.budget else ""

    # -- a chunk's life: opened, sent, polled, finished -------------------------------------
    def open_chunk(self) -> bool:
        """Take the next rows and commit their intent (no batch yet); False when none
        are left."""
        start = self.source.next
        rows = self.source.take(settings.CONVEYOR_LLM_BATCH_ROWS)
        if not rows:
            self.exhausted = True  # (a "failed" cursor does not move to the end)
            return False
        rows = self.fitting(rows)
        marker = f"conveyor-{self.ctx.job_id}-{start}-{secrets.token_hex(6)}"
        lines = self.lines_for(rows)
        chunk = {
            "start": start,
            "size": len(rows),
            "stop": self.source.next,
            "marker": marker,
            "since": time.time(),
            "id": "",
            "status": "" if lines else "none",  # none: every row answered before
            "sent": len(lines),
            "done": 0,
        }
        self.lines[marker] = lines
        self.chunks.append(chunk)
        self.save()  # the intent, before any batch exists: a restart finds or makes it
        return True

    def fitting(self, rows: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        """The leading rows whose lines fit in one input file (its byte ceiling); the
        source moved back to the first row left out."""
        room = settings.CONVEYOR_LLM_BATCH_MAX_FILE_BYTES
        for index, (number, row) in enumerate(rows):
            room -= len(json.dumps(batch_line(number, row, self.options, self.api.chat_path))) + 1
            if room < 0 and index > 0:
                self.source.rewind(number)
                return rows[:index]
        return rows

    def lines_for(self, rows: list[tuple[int, dict]]) -> list[dict]:
        answered = self.reuse.answered(rows)
        return [
            batch_line(number, row, self.options, self.api.chat_path)
            for number, row in rows
            if number not in answered
        ]

    def rows_of(self, chunk: dict[str, Any]) -> list[tuple[int, dict]]:
        """A chunk's rows again: the same `take` from its start (no row of it has a
        result before it is finished, so the source gives the same rows)."""
        sent_to = self.source.next
        self.source.rewind(chunk["start"])
        rows = self.source.take(chunk["size"])
        self.source.rewind(sent_to)
        return rows

    def advance(self, chunk: dict[str, Any]) -> None:
        """Create the chunk's batch (unless a crash left one: found by its marker), or
        poll it."""
        if chunk["status"] in (*FINISHED, "none"):
            return
        if chunk["id"]:
            self.note(chunk, self.api.get(chunk["id"]))
            return
        lines = self.lines.pop(chunk["marker"], None)  # opened in this slice: no batch yet
        batch = None if lines is not None else self.api.find(chunk["marker"], chunk["since"])
        if batch is None:
            if lines is None:  # an intent of an earlier slice, and no batch: made again
                lines = self.lines_for(self.rows_of(chunk))
            if not lines:
                chunk["status"] = "none"
                return
            metadata = {
                MARKER: chunk["marker"],
                "conveyor_job": str(self.ctx.job_id),
                "conveyor_rows": f"{chunk['start']}-{chunk['stop'] - 1}",
            }
            batch = self.api.create(self.api.upload(lines), metadata)
        chunk["id"] = batch["id"]
        self.note(chunk, batch)
        self.save()  # its id: later slices poll it, a cancel cancels it

    def note(self, chunk: dict[str, Any], batch: dict[str, Any]) -> None:
        counts = batch.get("request_counts") or {}
        chunk["status"] = str(batch.get("status") or "validating")
        chunk["done"] = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
        chunk["sent"] = int(counts.get("total") or chunk["sent"])
        chunk["output"] = batch.get("output_file_id") or ""
        chunk["errors"] = batch.get("error_file_id") or ""
        problems = (batch.get("errors") or {}).get("data") or []
        messages = [p.get("message", "") for p in problems if isinstance(p, dict)]
        chunk["problem"] = "; ".join(filter(None, messages))[:300]

    def finish(self, chunk: dict[str, Any]) -> None:
        """Store a finished chunk's rows (answers by custom_id, checked as in live mode;
        error lines and unanswered rows as row errors) with the cursor past it."""
        answers: dict[str, dict] = {}
        for file_id in (chunk.get("output"), chunk.get("errors")):
            if file_id:
                answers.update((line.get("custom_id"), line) for line in self.api.lines(file_id))
        rows = self.rows_of(chunk)
        reused = self.reuse.answered(rows)
        outcomes = [
            self.outcome(number, answers.get(custom_id(number)), reused.get(number), chunk)
            for number, _ in rows
        ]
        for outcome in outcomes:
            outcome.error = self.ctx.scrub(outcome.error)
        results = build_results(outcomes, self.reuse.keys)
        self.chunks.pop(0)
        self.done_to = chunk["stop"]
        sheet_id = self.source.sheet.pk
        self.ctx.commit(
            cursor=self.cursor(),
            processed=self.ctx.processed + len(results),
            failed=self.ctx.failed + sum(1 for r in results if r.failed),
            message=self.summary(),
            write=lambda: store_results(self.ctx.job_id, sheet_id, results),
            spent=batch_spent(outcomes),
            reused=sum(1 for r in results if r.reused),
        )

    def outcome(
        self, number: int, line: dict | None, reused: RowOutcome | None, chunk: dict[str, Any]
    ) -> RowOutcome:
        if line is not None:
            try:
                outputs = line_outputs(line, self.options)
            except RowError as exc:
                return RowOutcome(number, None, str(exc), 1, 0.0, usage=exc.usage)
            usage = outputs.pop(USAGE_KEY, None)
            return RowOutcome(number, outputs, "", 1, 0.0, usage=usage)
        if reused is not None:
            return reused
        status = chunk["status"]
        if status == "failed":
            why = f"the batch failed: {chunk.get('problem') or 'the API gave no reason'}"
        else:
            why = UNANSWERED.get(status, "the batch gave no answer for this row")
        return RowOutcome(number, None, why, 1, 0.0)

    # -- the job's state ------------------------------------------------------------
    def cursor(self) -> dict[str, Any]:
        return {
            "next": self.done_to,
            "mode": self.source.mode,
            "sent": self.source.next,
            "chunks": self.chunks,
        }

    def save(self) -> None:
        """The chunks as they are, in the job's cursor (one small transaction; then the
        checkpoint, which may end the slice: the next one goes on from here)."""
        self.ctx.commit(cursor=self.cursor(), message=self.summary())

    def summary(self) -> str:
        """What the job waits for: "OpenAI batch: in progress, 1,200 of 5,000 answered"."""
        out = [c for c in self.chunks if c["status"] != "none"]
        if not out:
            return f"Batch mode: {self.ctx.processed:,} rows stored"
        done = sum(c["done"] for c in out)
        sent = sum(c["sent"] for c in out)
        states: dict[str, int] = {}
        for chunk in out:
            name = batch_status_text(chunk["status"] or "being sent")
            states[name] = states.get(name, 0) + 1
        if len(out) == 1:
            where = next(iter(states))
            return f"OpenAI batch: {where}, {done:,} of {sent:,} answered"
        shown = ", ".join(f"{n} {name}" for name, n in states.items())
        return f"OpenAI batches: {shown}; {done:,} of {sent:,} rows answered"
