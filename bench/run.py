"""Run Conveyor's benchmarks: each figure printed next to its baseline from the same run.

Usage: `python bench/run.py [--quick] [BENCHMARK ...]` (all by default). Each benchmark
runs once per variant it applies to (SQLite; PostgreSQL and the Redis broker when
reachable), each in its own child process with a throwaway database, so Django is set
up fresh for it.
Results: a table on stdout and bench/results/latest.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, sys.path[0] is bench/ itself; make it the repository root instead so
# `bench.*`, `config` and the apps import, and bench/'s module names shadow nothing.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import NamedTuple  # noqa: E402

from bench import report  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS_DIR,
    ROOT,
    VARIANT_NAMES,
    Bench,
    Variant,
    make_variant,
    postgres_reachable,
    redis_reachable,
    workspace,
)


class Benchmark(NamedTuple):
    module: str  # has `run(bench)`; imported only in the child, after Django is set up
    description: str  # one line for --help
    # Variants where the figures can differ: a benchmark whose work never touches the
    # broker (uploads, live updates) skips the Redis ones.
    variants: tuple[str, ...] = VARIANT_NAMES


DATABASES_ONLY = ("sqlite", "postgres")

BENCHMARKS: dict[str, Benchmark] = {
    "engine": Benchmark(
        "bench.engine",
        "jobs/s and per-slice overhead vs plain django-q2 tasks on the same cluster",
    ),
    "tasks": Benchmark(
        "bench.tasks_backend",
        "no-op Django @task via Conveyor's Tasks backend vs django-q2 async_task, same cluster",
    ),
    "rows": Benchmark(
        "bench.rows",
        "rows/s of a no-op sheet job vs a django-q2 task per row and vs bulk insert",
    ),
    "upload": Benchmark(
        "bench.upload",
        "1M-row CSV through daphne to its processing job queued vs the database's bulk load",
        DATABASES_ONLY,
    ),
    "memory": Benchmark(
        "bench.memory",
        "peak worker RSS 200k vs 20k rows; import worker RSS (CSV, XLSX) 1M vs 100k rows",
        DATABASES_ONLY,
    ),
    "llm": Benchmark(
        "bench.llm",
        "3 llm sheet jobs at once vs the rate concurrency / fake API latency allows",
        DATABASES_ONLY,
    ),
    "web": Benchmark(
        "bench.web",
        "web over 1,000 URLs on 50 hosts (per-host peak <= 2) vs concurrency / latency; web -> llm",
        DATABASES_ONLY,
    ),
    "live": Benchmark(
        "bench.live",
        "commit -> websocket frame latency (daphne) vs relay poll / bare NOTIFY",
        DATABASES_ONLY,
    ),
    "bodies": Benchmark(
        "bench.bodies",
        "web process RSS growth on a refused 60 MB POST and an accepted 50 MB upload",
        DATABASES_ONLY,
    ),
    "fanout": Benchmark(
        "bench.fanout",
        "commit -> frame at the last of 200 websocket clients vs 1 client",
        DATABASES_ONLY,
    ),
}

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
CHILD_TIMEOUT = 1800


def parse_args(argv: list[str]) -> argparse.Namespace:
    listing = "\n".join(f"  {name:<10} {b.description}" for name, b in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Conveyor benchmarks. Figures are printed beside baselines measured in "
        "the same run, never asserted.",
        epilog=f"benchmarks:\n{listing}\n\nvariants: {', '.join(VARIANT_NAMES)} "
        "(PostgreSQL and Redis ones only when reachable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK", help="default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test, < 1 min)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL server to create a throwaway database on (default: DATABASE_URL "
        f"if PostgreSQL, else {DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--redis", metavar="URL", help=f"Redis for the broker variants (default: {DEFAULT_REDIS})"
    )
    parser.add_argument(
        "--variants",
        metavar="LIST",
        help=f"comma-separated subset of: {', '.join(VARIANT_NAMES)} (default: all reachable)",
    )
    parser.add_argument("--workers", type=int, default=2, help="workers per cluster (default 2)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for every cluster, e.g. CONVEYOR_BROKER_POLL=0.02 (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument(
        "--markdown",
        nargs="?",
        const=RESULTS_DIR / "latest.json",
        type=Path,
        metavar="JSON",
        help="print the README's figures table from a results file (default: latest.json) and exit",
    )
    # Internal: one (benchmark, variant) in this process.
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--variant-json", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; see --help")
    return args


# --- child: one benchmark on one variant ---------------------------------------------


def run_child(args: argparse.Namespace) -> int:
    variant = Variant.from_json(args.variant_json)
    module_name = BENCHMARKS[args.child].module
    outcome: dict = {"figures": [], "details": {}, "services": {}, "error": None}
    started = time.monotonic()
    bench = None
    try:
        with workspace(variant, args.workers) as space:
            outcome["services"] = report.services(variant.database, variant.broker)
            module = importlib.import_module(module_name)
            # This process's own django-q2 log lines ("Enqueued ...") are not the figures.
            logging.getLogger("django-q").setLevel(logging.WARNING)
            env = dict(item.split("=", 1) for item in args.env)
            bench = Bench(space, quick=args.quick, workers=args.workers, env=env)
            try:
                module.run(bench)
            finally:
                bench.stop_clusters()
    except Exception:
        outcome["error"] = traceback.format_exc()
        print(outcome["error"], file=sys.stderr, flush=True)
    if bench is not None:
        outcome["figures"] = [figure.to_dict() for figure in bench.figures]
        outcome["details"] = bench.details
    outcome["seconds"] = round(time.monotonic() - started, 1)
    args.result_file.write_text(json.dumps(outcome, default=str))
    return 1 if outcome["error"] else 0


# --- parent: choose variants, run children, report --------------------------------------


def choose_variants(args: argparse.Namespace) -> list[tuple[Variant, str]]:
    """Every requested variant with '' or the reason it is skipped."""
    env_url = os.environ.get("DATABASE_URL", "")
    postgres_url = args.postgres or (env_url if env_url.startswith("postgres") else "")
    postgres_url = postgres_url or DEFAULT_POSTGRES
    redis_url = args.redis or os.environ.get("REDIS_URL") or DEFAULT_REDIS
    names = args.variants.split(",") if args.variants else list(VARIANT_NAMES)
    bad = [name for name in names if name not in VARIANT_NAMES]
    if bad:
        raise SystemExit(f"unknown variant(s): {', '.join(bad)}")
    postgres_problem = (
        postgres_reachable(postgres_url) if any("postgres" in n for n in names) else ""
    )
    redis_problem = redis_reachable(redis_url) if any("redis" in n for n in names) else ""
    chosen = []
    for name in names:
        variant = make_variant(name, postgres_url, redis_url)
        why = []
        if variant.database == "postgres" and postgres_problem:
            why.append(f"PostgreSQL not reachable at {_safe(postgres_url)}: {postgres_problem}")
        if variant.broker == "redis" and redis_problem:
            why.append(f"Redis not reachable at {_safe(redis_url)}: {redis_problem}")
        chosen.append((variant, "; ".join(why)))
    return chosen


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def run_one(name: str, variant: Variant, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = Path(handle.name)
    command = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--child",
        name,
        "--variant-json",
        variant.to_json(),
        "--result-file",
        str(result_file),
        "--workers",
        str(args.workers),
        *(["--quick"] if args.quick else []),
        *(f"--env={item}" for item in args.env),
    ]
    try:
        subprocess.run(command, cwd=ROOT, timeout=CHILD_TIMEOUT, check=False)
        text = result_file.read_text()
        outcome = json.loads(text) if text else {"error": "the child process wrote no result"}
    except subprocess.TimeoutExpired:
        outcome = {"error": f"timed out after {CHILD_TIMEOUT} s"}
    finally:
        result_file.unlink(missing_ok=True)
    return outcome


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if args.markdown:
        print(report.markdown(json.loads(args.markdown.read_text())))
        return 0
    names = args.benchmarks or list(BENCHMARKS)
    info = report.machine()
    print(f"Machine: {report.machine_line(info)}")
    extra = f"; cluster env: {' '.join(args.env)}" if args.env else ""
    print(f"Workers per cluster: {args.workers}{' (quick run)' if args.quick else ''}{extra}\n")
    started = report.now_iso()
    runs: list[dict] = []
    status = 0
    for name in names:
        print(f"== {name}: {BENCHMARKS[name].description}", flush=True)
        for variant, skipped in choose_variants(args):
            if variant.name not in BENCHMARKS[name].variants:
                print(f"  [{variant.name}] not run: the broker plays no part here", flush=True)
                continue
            run = {"benchmark": name, "variant": variant.name, "label": variant.label}
            if skipped:
                print(f"  [{variant.name}] skipped: {skipped}", flush=True)
                run.update(skipped=skipped, figures=[])
            else:
                run["load_before"] = os.getloadavg()[0]
                run.update(run_one(name, variant, args))
                run["load_after"] = os.getloadavg()[0]
                status |= 1 if run.get("error") else 0
            runs.append(run)
        print()
    for name in names:
        mine = [run for run in runs if run["benchmark"] == name]
        print(f"== {name} ({args.workers} workers per cluster)\n{report.table(mine)}")
        for line in report.notes(mine):
            print(f"  * {line}")
        print(f"  * {report.services_line(mine)}")
        print(f"  * {report.load_line(mine, info['cpus'])}")
        print()
    document = {
        "started_at": started,
        "finished_at": report.now_iso(),
        "command": shlex.join(["bench/run.py", *argv]),
        "quick": args.quick,
        "workers": args.workers,
        "cluster_env": args.env,
        "machine": info,
        "runs": runs,
    }
    report.write_json(args.output, document)
    print(
        f"Wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
