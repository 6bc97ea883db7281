"""The llm benchmark: how close three I/O-bound sheet jobs at once come to the rate
their concurrency and the upstream latency allow.

The fake OpenAI-compatible API of the tests (tests/fakes/openai_api.py) answers every
request after a fixed latency, in this process. A cluster with three workers runs three
`llm` jobs at once (one sheet each, concurrency 8). Efficiency = achieved rows/s (all
rows, first submit to last job succeeded) / the theoretical 3 x concurrency / latency.
The fake's request log says where the rest of the time went: per job, the time with
fewer requests in flight than its concurrency allows, and the gaps with none.
Then `concurrency=auto` (the default) against the same fake enforcing 3,000 requests a
minute with OpenAI's headers and answering after 0.5 s: one sheet with default options
(goal: the spec's Case A, >= 1,000 rows/min), and three sheets at once sharing the limit
(goal: >= 90 % of it, measured on the fake's log, with <= 2 % of requests answered 429).
bench/README.md explains the method.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
import time

from bench import sheetdata
from bench.common import ROOT, Bench, RssSampler, Stopwatch, tree_rss

JOBS = 3
CONCURRENCY = 8
LATENCY = 0.2
CATEGORIES = ["Customer", "Lead", "Partner"]
VARYING_CAP = 2.0  # seconds: the longest answer in the varying-latency round
BAR = 0.90  # SPEC.md "Quality bars": >= 90 % of the possible throughput
AUTO_RPM = 3000  # the fake's limit for the auto rounds
AUTO_LATENCY = 0.5
CASE_A = 1000  # rows/min: SPEC.md Case A


def run(bench: Bench) -> None:
    from tests.fakes import openai_api

    rows = bench.size(1000, 160)
    varying_rows = bench.size(400, 120)
    from django.conf import settings

    fake = openai_api.FakeOpenAI().start()
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = [fake.base_url]  # what an operator would list
    try:
        fake.latency = LATENCY
        fake.categories = CATEGORIES
        sheets = [_sheet(f"s{i}", rows) for i in range(JOBS)]
        varying = [_sheet(f"v{i}", varying_rows) for i in range(JOBS)]
        warm = [_sheet(f"w{i}", CONCURRENCY * 2) for i in range(JOBS)]
        options = {
            "base_url": fake.base_url,
            "categories": ", ".join(CATEGORIES),
            "concurrency": CONCURRENCY,
            "model": "fake-model",
        }
        bench.say(f"{JOBS} workers, so that the {JOBS} jobs run at once")
        # The workers check the options again when a job starts.
        allowed = {"CONVEYOR_LLM_ALLOWED_BASE_URLS": fake.base_url}
        with bench.cluster("llm", workers=JOBS, **allowed) as cluster:
            _run_all(warm, options, timeout=60)  # workers import httpx and connect
            idle = sum(tree_rss(cluster.proc.pid).values())
            fake.calls.clear()
            with RssSampler(cluster.proc.pid) as memory:
                seconds, jobs = _run_all(sheets, options, timeout=60 + rows / 5)
            calls = list(fake.calls)
            # Real APIs answer in widely varying times: exponential, same mean, capped.
            pick = random.Random(7)
            fake.latency = lambda call: min(VARYING_CAP, pick.expovariate(1 / LATENCY))
            fake.calls.clear()
            varying_seconds, _ = _run_all(varying, options, timeout=60 + varying_rows / 5)
            varying_calls = list(fake.calls)
            auto = _auto_rounds(bench, fake)
        clock_offset = time.time() - time.monotonic()  # the fake logs monotonic times
        fake.latency = LATENCY
        bare = bare_clients(bench, fake.base_url, rows)
    finally:
        fake.stop()
    _record(bench, rows, seconds, jobs, calls, clock_offset, bare)
    _record_memory(bench, rows, seconds, memory.peak_total, idle)
    _record_varying(bench, varying_rows, varying_seconds, varying_calls)
    _record_auto(bench, *auto)


def _auto_rounds(bench: Bench, fake) -> tuple:
    """One sheet, then three at once, with default options (concurrency=auto) against
    the fake enforcing AUTO_RPM: (rows, seconds, calls) of each round."""
    one_rows = bench.size(800, 200)
    three_rows = bench.size(600, 150)
    fake.latency = AUTO_LATENCY
    fake.rpm_limit = AUTO_RPM
    fake.limit_window = 60.0  # OpenAI's bucket: a whole minute's worth
    options = {"base_url": fake.base_url, "categories": ", ".join(CATEGORIES), "model": "m"}
    try:
        fake.calls.clear()
        one = [_sheet("a1", one_rows)]
        one_seconds, _ = _run_all(one, options, timeout=120 + one_rows / 5)
        one_calls = list(fake.calls)
        fake._buckets.clear()
        fake.limit_window = 1.0  # quantized, as OpenAI may enforce it: no minute's burst
        fake.calls.clear()
        fake.limited = 0
        three = [_sheet(f"a3{i}", three_rows) for i in range(JOBS)]
        three_seconds, _ = _run_all(three, options, timeout=120 + three_rows / 5)
        three_calls = list(fake.calls)
    finally:
        fake.rpm_limit = 0
    return (one_rows, one_seconds, one_calls), (three_rows * JOBS, three_seconds, three_calls)


def _steady_pace(calls) -> tuple[float, float]:
    """Requests/min the fake served between the first and the last request it took, and
    the share of requests it answered 429."""
    starts = sorted(c.started for c in calls)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    served = sum(1 for c in calls if c.status == 200)
    limited = sum(1 for c in calls if c.status == 429)
    return (served / span * 60 if span else 0.0), (limited / len(calls) if calls else 0.0)


def _record_auto(bench: Bench, one: tuple, three: tuple) -> None:
    rows, seconds, calls = one
    per_minute = rows / seconds * 60
    pace, limited = _steady_pace(calls)
    bench.detail(
        "auto_one_sheet",
        {"rows": rows, "seconds": round(seconds, 2), "pace_rpm": round(pace), "429": limited},
    )
    bench.say(
        f"auto, one sheet: {rows} rows in {seconds:.1f} s = {per_minute:,.0f} rows/min "
        f"(served {pace:,.0f} requests/min while running, {limited:.1%} answered 429)"
    )
    bench.figure(
        "llm auto, one sheet",
        per_minute,
        "rows/min",
        baseline=("SPEC Case A", CASE_A, "rows/min"),
        comment=(
            f"{'meets' if per_minute >= CASE_A else 'misses'} Case A; the fake allows "
            f"{AUTO_RPM:,}/min at {AUTO_LATENCY:g} s; {limited:.1%} of requests answered 429"
        ),
        note=(
            f"one llm job of {rows} rows with default options (concurrency=auto) against the "
            f"fake enforcing {AUTO_RPM:,} requests/min with OpenAI's x-ratelimit headers and "
            f"answering after {AUTO_LATENCY:g} s; submit to succeeded."
        ),
    )
    rows, seconds, calls = three
    pace, limited = _steady_pace(calls)
    share = pace / AUTO_RPM
    bench.detail(
        "auto_three_sheets",
        {"rows": rows, "seconds": round(seconds, 2), "pace_rpm": round(pace), "429": limited},
    )
    bench.say(
        f"auto, three sheets: {rows} rows in {seconds:.1f} s; the fake served {pace:,.0f} "
        f"requests/min while they ran = {share:.1%} of its limit; {limited:.1%} answered 429"
    )
    verdict = "meets" if share >= BAR and limited <= 0.02 else "misses"
    bench.figure(
        "llm auto, 3 sheets share a limit",
        pace,
        "req/min",
        baseline=("the fake's limit", AUTO_RPM, "req/min"),
        comment=(
            f"{share:.1%} of the limit, {limited:.1%} answered 429: {verdict} the "
            f">= {BAR:.0%} and <= 2 % bar"
        ),
        note=(
            f"{JOBS} llm jobs at once ({rows // JOBS} rows each, default options) in "
            f"{JOBS} workers, the fake enforcing {AUTO_RPM:,} requests/min (a bucket of one "
            "second's worth: no burst); answered requests per minute between the first and the "
            "last request the fake took. The workers share one schedule: through Redis in the "
            "+redis variants, else through the database (CONVEYOR_PACE_STORE)."
        ),
    )


def _record_memory(bench: Bench, rows: int, seconds: float, peak: int, idle: int) -> None:
    """The whole cluster's memory while three llm sheets run at once (the default setup)."""
    mb = 1024 * 1024
    bench.figure(
        "cluster RSS, 3 llm sheets at once",
        peak / mb,
        "MB",
        baseline=("the same cluster idle", idle / mb, "MB"),
        better="lower",
        comment=(
            f"{JOBS} x {rows:,} rows in {seconds:.1f} s; goal <= 450 MB (RSS counts the pages "
            "the forked processes share once per process)"
        ),
        note="sum of the RSS of every process of the qcluster tree, sampled every 0.2 s",
    )


def bare_clients(bench: Bench, base_url: str, rows: int) -> float:
    """Seconds for JOBS processes, each sending `rows` chat requests CONCURRENCY at a
    time with one httpx client and no Conveyor, to go through the same fake at once."""
    code = f"import bench.llm as m; m.bare_client({base_url!r}, {rows}, {CONCURRENCY})"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(JOBS)
    ]
    try:
        for process in processes:  # each has imported httpx and waits for "go"
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a bare client did not start")
        watch = Stopwatch()
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            if process.wait(timeout=60 + rows) != 0:
                raise RuntimeError("a bare client failed")
        seconds = watch.stop()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    bench.say(f"bare httpx clients: {rows * JOBS} rows in {seconds:.2f} s")
    return seconds


def bare_client(base_url: str, rows: int, concurrency: int) -> None:
    """One bare client process (see `bare_clients`): the same requests as the llm
    processor sends, `concurrency` at a time over one httpx.AsyncClient."""
    import asyncio

    import httpx

    system = f"Reply with exactly one of these categories: {', '.join(CATEGORIES)}."

    async def main() -> None:
        pending = iter(range(rows))
        async with httpx.AsyncClient(timeout=60) as client:

            async def worker() -> None:
                for n in pending:
                    messages = [
                        {"role": "system", "content": system},
                        {"role": "user", "content": f"sheet: bare\ntext: record {n}"},
                    ]
                    body = {"model": "fake-model", "messages": messages, "temperature": 0.0}
                    response = await client.post(f"{base_url}/chat/completions", json=body)
                    response.raise_for_status()
                    response.json()["choices"][0]["message"]["content"]

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(main())


def _sheet(tag: str, rows: int):
    """A sheet whose every row names its tag, so the fake's log tells the jobs apart."""
    from sheets.io.importing import sheet_import
    from sheets.io.sources import open_upload

    lines = ["sheet,text", *(f"{tag},record {n} of sheet {tag}" for n in range(1, rows + 1))]
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    table = open_upload(data, f"llm-{tag}.csv")
    return sheet_import(table=table, owner=sheetdata.owner(), name=f"llm-{tag}.csv")


def _run_all(sheets, options: dict, timeout: float):
    """Submit one llm job per sheet at once; seconds until every one succeeded."""
    watch = Stopwatch()
    submitted = [sheetdata.submit(sheet, "llm", options) for sheet in sheets]
    jobs = [sheetdata.wait_done(job.pk, timeout) for job in submitted]
    seconds = watch.stop()
    for sheet, job in zip(sheets, jobs, strict=True):
        if job.processed != sheet.row_count or job.failed:
            raise RuntimeError(f"job {job.pk}: {job.processed} rows, {job.failed} failed")
    return seconds, jobs


def _record(
    bench: Bench, rows: int, seconds: float, jobs, calls, clock_offset: float, bare: float
) -> None:
    total = rows * JOBS
    achieved = total / seconds
    possible = JOBS * CONCURRENCY / LATENCY
    efficiency = achieved / possible
    served = [c.finished - c.started for c in calls if c.finished is not None]
    mean_latency = sum(served) / len(served)
    per_job = [_time_budget(calls, job, clock_offset) for job in jobs]
    bench.detail("seconds", round(seconds, 3))
    bench.detail("requests", len(calls))
    bench.detail("served_latency_ms_mean", round(mean_latency * 1000, 2))
    bench.detail("per_job", per_job)
    _paid_once(bench, "", calls, total)
    budget = {key: sum(job[key] for job in per_job) / len(per_job) for key in per_job[0]}
    bench.detail("per_job_mean", {key: round(value, 3) for key, value in budget.items()})
    lost = budget["wall_s"] - budget["ideal_s"]
    bench.say(
        f"{total} rows in {seconds:.2f} s = {achieved:.1f} rows/s of {possible:.0f} possible "
        f"({efficiency:.1%}); the fake answered in {mean_latency * 1000:.0f} ms on average"
    )
    running_lost = budget["running_s"] - budget["ideal_s"]
    bench.say(
        f"per job: {budget['wall_s']:.2f} s for {budget['ideal_s']:.2f} s of upstream time; "
        f"lost {lost:.2f} s = start {budget['start_s']:.2f} + while running "
        f"{running_lost:.2f} ({budget['mean_in_flight']:.1f} of {CONCURRENCY} requests in "
        f"flight on average) + end {budget['end_s']:.2f}"
    )
    verdict = "meets" if efficiency >= BAR else "misses"
    bench.figure(
        "llm, 3 sheets at once",
        achieved,
        "rows/s",
        baseline=(
            f"{JOBS} x concurrency {CONCURRENCY} / latency {LATENCY:g} s",
            possible,
            "rows/s",
        ),
        comment=(
            f"efficiency {efficiency:.1%}, {verdict} the ≥ {BAR:.0%} bar; "
            f"{budget['mean_in_flight']:.1f} of {CONCURRENCY} requests in flight on average; "
            f"start+end {budget['start_s'] + budget['end_s']:.2f} s a job"
        ),
        note=(
            f"{JOBS} llm jobs of {rows} rows each, submitted at once to a cluster of {JOBS} "
            f"workers, against a fake OpenAI-compatible API answering after {LATENCY:g} s; "
            "first submit to last job succeeded. Baseline: the rate the concurrency and the "
            "latency allow; the ratio is the efficiency. From the fake's request log, a "
            "job's lost time splits into: start (submit to first request), running (requests "
            "in flight below the concurrency: reading rows, commits, slice boundaries), end "
            "(last answer to succeeded)."
        ),
    )
    bare_rate = total / bare
    bench.detail("bare_clients_seconds", round(bare, 3))
    bench.figure(
        "llm vs bare httpx clients",
        achieved,
        "rows/s",
        baseline=(f"{JOBS} bare httpx clients, concurrency {CONCURRENCY}", bare_rate, "rows/s"),
        comment=(
            f"bare clients reach {bare_rate / possible:.1%} of the possible rate here: "
            "the rest is the fake and the CPUs"
        ),
        note=(
            f"the same {JOBS} llm jobs against {JOBS} processes that each send the same "
            f"{rows} requests {CONCURRENCY} at a time over one httpx client, no Conveyor, "
            "to the same fake at once: the ratio is Conveyor's own share of the loss."
        ),
    )


def _record_varying(bench: Bench, rows: int, seconds: float, calls) -> None:
    """The same jobs when answers take anywhere from ms to 2 s (mean ~0.2 s): what the
    concurrency allows is then CONCURRENCY / the mean answer time actually served."""
    served = [c.finished - c.started for c in calls if c.finished is not None]
    mean_latency = sum(served) / len(served)
    achieved = rows * JOBS / seconds
    possible = JOBS * CONCURRENCY / mean_latency
    efficiency = achieved / possible
    bench.detail(
        "varying_latency",
        {
            "rows_per_job": rows,
            "seconds": round(seconds, 3),
            "served_latency_ms_mean": round(mean_latency * 1000, 1),
            "served_latency_ms_max": round(max(served) * 1000, 1),
        },
    )
    bench.say(
        f"varying latency: {rows * JOBS} rows in {seconds:.2f} s = {achieved:.1f} rows/s of "
        f"{possible:.0f} possible ({efficiency:.1%}); mean answer {mean_latency * 1000:.0f} ms, "
        f"longest {max(served) * 1000:.0f} ms"
    )
    _paid_once(bench, "varying_", calls, rows * JOBS)
    verdict = "meets" if efficiency >= BAR else "misses"
    bench.figure(
        "llm, varying latency",
        achieved,
        "rows/s",
        baseline=(f"{JOBS} x {CONCURRENCY} / mean answer time", possible, "rows/s"),
        comment=(
            f"efficiency {efficiency:.1%}, {verdict} the ≥ {BAR:.0%} bar; mean answer "
            f"{mean_latency * 1000:.0f} ms, longest {max(served) * 1000:.0f} ms"
        ),
        note=(
            f"the same set-up with {rows} rows a sheet, the fake answering after an "
            f"exponentially distributed time (mean {LATENCY:g} s, at most {VARYING_CAP:g} s), "
            "as real APIs vary; baseline: the rate the concurrency and the mean answer time "
            "actually served allow."
        ),
    )


def _paid_once(bench: Bench, prefix: str, calls, rows: int) -> None:
    """SPEC "Quality bars": each row's paid request succeeds once."""
    successful = sum(1 for call in calls if call.status == 200)
    bench.detail(f"{prefix}successful_requests_per_row", round(successful / rows, 4))
    bench.say(
        f"{prefix.rstrip('_') or 'fixed latency'}: successful requests ÷ rows = "
        f"{successful} ÷ {rows} = {successful / rows:.3f} (goal 1.000)"
    )


def _row(call) -> tuple[str, int]:
    """(sheet tag, row number) of a request: the rows read "record N of sheet TAG"."""
    words = call.user_message.rsplit("record ", 1)[1].split()
    return words[3], int(words[0])


def _time_budget(calls, job, clock_offset: float) -> dict[str, float]:
    """Where one job's wall time went, from the fake's log (monotonic clock + offset).

    wall = start (submit to first request) + running (first request to last answer)
    + end (last answer to succeeded). While running, the rows stream: the average
    number of requests in flight says how well the concurrency was kept busy.
    """
    tag = _tag_of_job(job)
    spans = [(c.started, c.finished) for c in calls if c.finished is not None and _row(c)[0] == tag]
    first = min(start for start, _ in spans)
    last = max(end for _, end in spans)
    busy = sum(end - start for start, end in spans)
    return {
        "wall_s": (job.finished_at - job.created_at).total_seconds(),
        "ideal_s": len(spans) * LATENCY / CONCURRENCY,
        "start_s": first + clock_offset - job.created_at.timestamp(),
        "end_s": job.finished_at.timestamp() - (last + clock_offset),
        "running_s": last - first,
        "mean_in_flight": busy / (last - first),
    }


def _tag_of_job(job) -> str:
    from sheets.models import Sheet

    return Sheet.objects.get(pk=job.params["sheet_id"]).name.removeprefix("llm-").split(".")[0]
