"""Reporting: the machine a run happened on, the table printed on stdout and the JSON
file (bench/results/latest.json) the README's figures are updated from.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "django": _version("Django"),
        "django_q2": _version("django-q2"),
        "sqlite": sqlite3.sqlite_version,
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, "
        f"Python {info['python']}, Django {info['django']}, django-q2 {info['django_q2']}, "
        f"SQLite {info['sqlite']}"
    )


def services(variant_database: str, broker: str) -> dict[str, str]:
    """Versions of the database and broker servers, read through Django's connection."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    else:
        database = f"SQLite {sqlite3.sqlite_version} (WAL)"
    if broker == "redis":
        from django_q.brokers import get_broker

        broker_text = f"django-q2 Redis broker ({get_broker().info()})"
    else:
        broker_text = "django-q2 ORM broker (same database)"
    return {"database": database, "broker": broker_text}


# --- numbers and the table -----------------------------------------------------------


def number(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for run in runs:
        if run.get("skipped"):
            rows.append([run["label"], "skipped", "", "", "", "", run["skipped"]])
            continue
        if run.get("error"):
            rows.append([run["label"], "ERROR", "", "", "", "", run["error"].splitlines()[-1]])
            continue
        for fig in run["figures"]:
            ratio = fig["ratio"]
            rows.append(
                [
                    run["label"],
                    fig["name"],
                    f"{number(fig['value'])} {fig['unit']}",
                    f"{number(fig['baseline_value'])} {fig['baseline_unit']}",
                    fig["baseline_name"],
                    f"{number(ratio)}×" if ratio is not None else "-",
                    fig.get("comment", ""),
                ]
            )
    return rows


def markdown(document: dict[str, Any]) -> str:
    """The README's figures table for a results document (bench/results/latest.json)."""
    info = document["machine"]
    header = [
        "benchmark",
        "variant",
        "figure",
        "Conveyor",
        "baseline",
        "baseline is",
        "ratio",
        "comment",
    ]
    lines = [
        f"Measured {document['started_at'][:10]}: {machine_line(info)}; "
        f"{document['workers']} workers per cluster"
        + (" (quick run)" if document.get("quick") else "")
        + (
            f"; cluster env {' '.join(document['cluster_env'])}"
            if document.get("cluster_env")
            else ""
        )
        + f". {services_line(document['runs'])}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    for run in document["runs"]:
        for row in _rows([run]):
            lines.append("| " + " | ".join([run["benchmark"], *row]) + " |")
    lines.append("")
    load = load_line(document["runs"], info["cpus"])
    lines.append(load[0].upper() + load[1:] + ".")
    return "\n".join(lines)


def services_line(runs: list[dict[str, Any]]) -> str:
    seen: list[str] = []
    for run in runs:
        for text in (run.get("services") or {}).values():
            if text not in seen:
                seen.append(text)
    return "Services: " + "; ".join(seen) if seen else "No services"


def table(runs: list[dict[str, Any]]) -> str:
    """Fixed-width table: one row per figure, its baseline and ratio beside it."""
    header = ["variant", "figure", "Conveyor", "baseline", "baseline is", "ratio", "comment"]
    rows = [header, *_rows(runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 5}

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows[1:])])


def notes(runs: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for run in runs:
        for fig in run.get("figures", []):
            text = f"{fig['name']}: {fig['note']}" if fig.get("note") else ""
            if text and text not in seen:
                seen.append(text)
    return seen


def load_line(runs: list[dict[str, Any]], cpus: int) -> str:
    """The 1-minute load average around each run: other work on the machine skews figures."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        if "load_before" in run:
            groups.setdefault(run.get("benchmark", ""), []).append(
                f"{run['variant']} {run['load_before']:.1f}->{run['load_after']:.1f}"
            )
    named = len(groups) > 1
    parts = [(f"{name}: " if named else "") + ", ".join(items) for name, items in groups.items()]
    return f"load average (1 min) before->after each run, {cpus} CPUs: " + "; ".join(parts)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
