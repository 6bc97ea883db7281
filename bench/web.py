"""The web benchmark: a sheet of URLs over many hosts through `web` with its defaults
(robots.txt on, 2 pages at once per host, 32 in flight), and `web` -> `llm` on the page
text as one chain.

50 fake sites (tests/fakes/website.py) on 127.0.0.2-51, each its own host, answer every
request after 0.3 s and count the most requests they were answering at once. A cluster
with one worker runs one sheet job: 1,000 URLs, 20 a host, in random order (Case B of
the spec: >= 500 rows/min, each host seeing <= 2 at once), then the same URLs grouped by
host (each host's 20 in a row: the rows waiting for a busy host are the job's own
look-ahead). Then the chain web -> llm over the 1,000 rows, against the fake
OpenAI-compatible API of the tests, and the same chain again (every row reused).
bench/README.md explains the method.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys

from bench import sheetdata
from bench.common import ROOT, Bench, Stopwatch

HOSTS = 50
LATENCY = 0.3
PER_HOST = 2  # web's default
CONCURRENCY = 32  # web's default
GOAL = 500  # rows/min, the spec's Case B
LLM_LATENCY = 0.2
LLM_CONCURRENCY = 16


def run(bench: Bench) -> None:
    from django.conf import settings

    from tests.fakes.openai_api import FakeOpenAI
    from tests.fakes.website import FakeSite

    rows = bench.size(1000, 200)
    sites = [FakeSite(host=f"127.0.0.{n}").start() for n in range(2, 2 + HOSTS)]
    fake_llm = FakeOpenAI().start()
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = [fake_llm.base_url]
    env = {
        "CONVEYOR_WEB_ALLOW_PRIVATE": "1",  # the fake sites are on loopback addresses
        "CONVEYOR_LLM_ALLOWED_BASE_URLS": fake_llm.base_url,
    }
    try:
        for site in sites:
            site.latency = LATENCY
        fake_llm.latency = LLM_LATENCY
        urls = [site.url(f"/?page={n}") for n in range(rows // HOSTS) for site in sites]
        random.Random(7).shuffle(urls)
        grouped = sorted(urls, key=lambda url: url.split("/")[2])
        with bench.cluster("web", workers=1, **env):
            _web_job(_sheet("warm", urls[: CONCURRENCY * 2]), timeout=120)  # imports, robots
            _reset(sites)
            spread = _measure(bench, "random order", _sheet("spread", urls), sites, rows)
            _reset(sites)
            by_host = _measure(bench, "grouped by host", _sheet("grouped", grouped), sites, rows)
            _reset(sites)
            chain = _chain(bench, _sheet("chain", urls), fake_llm, rows)
        _reset(sites)
        spread["bare_seconds"] = bare_client(bench, urls)
        spread["bare_peak_per_host_max"] = max(site.peak for site in sites)
    finally:
        fake_llm.stop()
        for site in sites:
            site.stop()
    _record(bench, rows, spread, by_host, chain)


def _sheet(tag: str, urls: list[str]):
    from sheets.io.importing import sheet_import
    from sheets.io.sources import open_upload

    lines = ["company,website", *(f"Company {n} of {tag},{url}" for n, url in enumerate(urls))]
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    table = open_upload(data, f"web-{tag}.csv")
    return sheet_import(table=table, owner=sheetdata.owner(), name=f"web-{tag}.csv")


def _reset(sites) -> None:
    for site in sites:
        with site._lock:
            site.requests.clear()
            site.times.clear()
            site.peak = site.active


def _web_job(sheet, timeout: float) -> float:
    options = {"url_column": "website", "reuse": False}  # every page fetched, each round
    seconds, job = sheetdata.run_job(sheet, "web", options, timeout=timeout)
    if job.failed:
        raise RuntimeError(f"web job {job.pk}: {job.failed} rows failed")
    return seconds


def _measure(bench: Bench, label: str, sheet, sites, rows: int) -> dict:
    seconds = _web_job(sheet, timeout=60 + rows)
    peaks = [site.peak for site in sites]
    robots = [site.requests.count("/robots.txt") for site in sites]
    result = {
        "seconds": round(seconds, 3),
        "rows_per_min": round(rows / seconds * 60, 1),
        "peak_per_host_max": max(peaks),
        "robots_fetches_per_host_max": max(robots),
        "pages": sum(len(site.requests) for site in sites) - sum(robots),
    }
    bench.detail(f"web_{label.replace(' ', '_')}", result)
    bench.say(
        f"web, {label}: {rows} rows in {seconds:.1f} s = {result['rows_per_min']:.0f} rows/min; "
        f"busiest host peak {max(peaks)} at once; robots.txt fetched at most "
        f"{max(robots)}x a host"
    )
    return result


def bare_client(bench: Bench, urls: list[str]) -> float:
    """Seconds for a bare httpx client in a process of its own, with the same manners
    (32 at once, 2 a host) and no Conveyor, to fetch the same URLs from the same fakes."""
    code = f"import bench.web as m; m.bare_fetch({urls!r})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare client did not start")
        watch = Stopwatch()
        process.stdin.write("go\n")
        process.stdin.flush()
        if process.wait(timeout=300) != 0:
            raise RuntimeError("the bare client failed")
        seconds = watch.stop()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    bench.say(f"bare httpx client: {len(urls)} pages in {seconds:.1f} s")
    return seconds


def bare_fetch(urls: list[str]) -> None:
    """The bare client (see `bare_client`): GET each URL, `CONCURRENCY` at a time and
    `PER_HOST` a host, over one httpx.AsyncClient; the body read, nothing parsed."""
    import asyncio
    from collections import defaultdict

    import httpx

    async def main() -> None:
        hosts: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_HOST))
        pending = iter(urls)
        async with httpx.AsyncClient(timeout=60) as client:

            async def worker() -> None:
                for url in pending:
                    async with hosts[httpx.URL(url).host]:
                        response = await client.get(url)
                        response.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(main())


def _chain(bench: Bench, sheet, fake_llm, rows: int) -> dict:
    from sheets.services import sheet_chain_submit

    steps = [
        {"processor": "web", "options": {"url_column": "website", "outputs": "title, text"}},
        {
            "processor": "llm",
            "columns": "company, text",
            "options": {
                "base_url": fake_llm.base_url,
                "model": "fake-model",
                "prompt": "What does this company do, in which industry? {company}: {text}",
                "concurrency": str(LLM_CONCURRENCY),
            },
        },
    ]

    def run_chain() -> tuple[float, list]:
        watch = Stopwatch()
        submitted = sheet_chain_submit(sheet=sheet, owner=sheetdata.owner(), steps=steps)
        jobs = [sheetdata.wait_done(job.pk, 120 + rows) for job in submitted]
        for job in jobs:
            if job.processed != rows or job.failed:
                raise RuntimeError(f"chain step {job.pk}: {job.processed} rows, {job.failed} bad")
        return watch.stop(), jobs

    calls_before = len(fake_llm.calls)
    seconds, jobs = run_chain()
    paid = len(fake_llm.calls) - calls_before
    again, again_jobs = run_chain()
    result = {
        "seconds": round(seconds, 3),
        "steps_seconds": [
            round((job.finished_at - job.created_at).total_seconds(), 3) for job in jobs
        ],
        # started_at: the first slice began (a later step's wait for the one before ends)
        "steps_running_seconds": [
            round((job.finished_at - (job.started_at or job.created_at)).total_seconds(), 3)
            for job in jobs
        ],
        "llm_started_after_web_s": round(
            (jobs[1].started_at - jobs[0].finished_at).total_seconds(), 3
        )
        if jobs[1].started_at
        else None,
        "llm_requests": paid,
        "again_seconds": round(again, 3),
        "again_worked_units": [job.worked_units for job in again_jobs],
        "again_llm_requests": len(fake_llm.calls) - calls_before - paid,
    }
    bench.detail("chain", result)
    bench.say(
        f"web -> llm: {rows} rows in {seconds:.1f} s ({paid} answers paid); "
        f"again: {again:.1f} s, {result['again_llm_requests']} answers paid"
    )
    return result


def _record(bench: Bench, rows: int, spread: dict, by_host: dict, chain: dict) -> None:
    possible = min(CONCURRENCY, HOSTS * PER_HOST) / LATENCY * 60
    peak = max(spread["peak_per_host_max"], by_host["peak_per_host_max"])
    verdict = "meets" if spread["rows_per_min"] >= GOAL and peak <= PER_HOST else "misses"
    bench.figure(
        f"web, {rows:,} URLs over {HOSTS} hosts",
        spread["rows_per_min"],
        "rows/min",
        baseline=(f"concurrency {CONCURRENCY} / latency {LATENCY:g} s", possible, "rows/min"),
        comment=(
            f"{verdict} the Case B goal (>= {GOAL} rows/min, every host <= {PER_HOST} at once): "
            f"busiest host {peak} at once; robots.txt once a host"
        ),
        note=(
            f"one web job with the defaults (robots.txt on, per_host {PER_HOST}, concurrency "
            f"{CONCURRENCY}) over {rows:,} URLs, {rows // HOSTS} on each of {HOSTS} fake sites "
            f"(127.0.0.2-{1 + HOSTS}) answering after {LATENCY:g} s, in random order; one "
            "worker; submit to succeeded. Baseline: what the concurrency and the latency allow."
        ),
    )
    bare_rate = rows / spread["bare_seconds"] * 60
    bench.figure(
        "web vs a bare polite httpx client",
        spread["rows_per_min"],
        "rows/min",
        baseline=(f"bare httpx, {CONCURRENCY} at once, {PER_HOST} a host", bare_rate, "rows/min"),
        comment=(
            f"the bare client reaches {bare_rate / possible:.0%} of {possible:,.0f} rows/min "
            f"here (busiest host {spread['bare_peak_per_host_max']} at once): the rest is "
            "the 50 fakes in one Python process and the CPUs"
        ),
        note=(
            "the same URLs fetched by one process with one httpx client, the same manners "
            "(32 at once, 2 a host) and nothing else: no robots.txt, parsing, database or "
            "job; the ratio is Conveyor's own share of the loss."
        ),
    )
    bench.figure(
        "web, the same URLs grouped by host",
        by_host["rows_per_min"],
        "rows/min",
        baseline=("random order", spread["rows_per_min"], "rows/min"),
        comment=(
            f"each host's {rows // HOSTS} URLs in a row: the job reads rows in order, so "
            f"about {2 * CONCURRENCY} rows ahead are in reach; busiest host "
            f"{by_host['peak_per_host_max']} at once"
        ),
        note="the same job, its rows sorted by host: the worst order for per-host limits.",
    )
    web_seconds = spread["seconds"]
    bench.figure(
        f"web -> llm chain, {rows:,} rows",
        rows / chain["seconds"] * 60,
        "rows/min",
        baseline=("web alone", rows / web_seconds * 60, "rows/min"),
        comment=(
            f"web ran {chain['steps_running_seconds'][0]:.1f} s, llm started "
            f"{chain['llm_started_after_web_s']} s after it and ran "
            f"{chain['steps_running_seconds'][1]:.1f} s; run again: {chain['again_seconds']:.1f} s, "
            f"{chain['again_llm_requests']} answers paid, no page fetched"
        ),
        note=(
            f"the chain web -> llm (prompt on the page text; fake API answering after "
            f"{LLM_LATENCY:g} s, concurrency {LLM_CONCURRENCY}) over the same {rows:,} URLs, "
            "submitted as one chain; then submitted again: every row reused."
        ),
    )
