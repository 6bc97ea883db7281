"""The runnable skeleton: settings from the environment, SQLite in WAL, a real cluster
running a task, /healthz, static htmx, login required."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from django.db import connection
from django.templatetags.static import static
from django_q.tasks import async_task, result

from tests.support.processes import ROOT, wait_for

SETTINGS_PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "engine": s.DATABASES["default"]["ENGINE"],
    "db_name": s.DATABASES["default"]["NAME"],
    "conn_max_age": s.DATABASES["default"].get("CONN_MAX_AGE"),
    "broker": "redis" if "redis" in s.Q_CLUSTER else "orm",
    "debug": s.DEBUG,
    "hosts": s.ALLOWED_HOSTS,
    "secret": s.SECRET_KEY,
    "workers": s.Q_CLUSTER["workers"],
}))
"""


def probe_settings(**env: str) -> dict:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settings_default_to_embedded_sqlite_and_orm_broker(tmp_path):
    conf = probe_settings(CONVEYOR_DATA_DIR=str(tmp_path))
    assert conf["engine"] == "django.db.backends.sqlite3"
    assert conf["db_name"] == str(tmp_path / "conveyor.sqlite3")
    assert conf["broker"] == "orm"
    assert conf["debug"] is False
    assert (tmp_path / "secret_key").exists(), "a secret key is generated once and kept"
    assert probe_settings(CONVEYOR_DATA_DIR=str(tmp_path))["secret"] == conf["secret"]


def test_settings_read_the_environment(tmp_path):
    conf = probe_settings(
        CONVEYOR_DATA_DIR=str(tmp_path),
        DATABASE_URL="postgres://u:p@db.example:5432/conveyor",
        REDIS_URL="redis://cache.example:6379/1",
        SECRET_KEY="from-the-environment",
        DEBUG="true",
        ALLOWED_HOSTS="conveyor.example,127.0.0.1",
        CONVEYOR_WORKERS="7",
    )
    assert conf["engine"] == "django.db.backends.postgresql"
    assert conf["db_name"] == "conveyor"
    assert conf["conn_max_age"] == 60, "persistent connections on PostgreSQL"
    assert conf["broker"] == "redis"
    assert conf["secret"] == "from-the-environment"
    assert conf["debug"] is True
    assert conf["hosts"] == ["conveyor.example", "127.0.0.1"]
    assert conf["workers"] == 7


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("disk", "CONVEYOR_PACE_STORE='disk': say redis, database or memory."),
        ("redis", "CONVEYOR_PACE_STORE=redis needs REDIS_URL."),
    ],
)
def test_a_pace_store_that_cannot_work_stops_the_start_with_why(tmp_path, value, message):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.update(CONVEYOR_DATA_DIR=str(tmp_path), CONVEYOR_PACE_STORE=value)
    out = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and message in out.stderr


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite-only check; this run uses " + connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 20_000


@pytest.mark.cluster
def test_cluster_runs_a_task_end_to_end(cluster):
    task_id = async_task("operator.add", 2, 3)
    assert wait_for(lambda: result(task_id) == 5, timeout=20, what="the task's result")


@pytest.mark.cluster
def test_healthz_reports_a_live_cluster_then_503_when_it_is_down(client, cluster_factory):
    cluster = cluster_factory(workers=1)
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["cluster"]["workers"] >= 1

    cluster.kill()
    response = wait_for(
        lambda: (r := client.get("/healthz")).status_code == 503 and r,
        timeout=30,
        what="/healthz to notice the dead cluster",
    )
    assert "no worker cluster" in response.json()["cluster"]["error"]


@pytest.mark.django_db
def test_healthz_is_503_without_any_cluster(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["cluster"]["ok"] is False


@pytest.mark.django_db
def test_htmx_and_its_websocket_extension_are_served_locally(client):
    for path in ("django_htmx/htmx-2.min.js", "django_htmx/ext/hx-ws-2.min.js", "css/conveyor.css"):
        response = client.get(static(path))
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content if response.streaming else [response.content])


@pytest.mark.django_db
def test_app_pages_require_login(client):
    for url in ("/", "/jobs/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
    assert client.get("/login/").status_code == 200


@pytest.mark.django_db
def test_pages_send_the_csrf_token_with_htmx_requests(client, user):
    client.force_login(user)
    html = client.get("/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert "htmx-2.min.js" in html and "hx-ws-2.min.js" in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "no script from elsewhere"


HEAVY_LIBRARIES = ["openpyxl", "numpy", "gspread", "clevercsv", "httpx", "cryptography", "twisted"]
STARTUP_PROBE = """
import json, sys, django
django.setup()
from jobs.engine import runner, worker  # what a cluster process holds before its first job
print(json.dumps({
    "heavy": sorted(name for name in {heavy} if name in sys.modules),
    "rss_mb": int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024,
}))
"""


def test_a_cluster_process_starts_without_the_libraries_only_some_jobs_need(tmp_path):
    """Every process of a cluster is forked from one that ran django.setup(): a library
    imported there sits in all seven (bench llm: cluster RSS goal <= 450 MB)."""
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE.replace("{heavy}", repr(HEAVY_LIBRARIES))],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CONVEYOR_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    started = json.loads(out.stdout.strip().splitlines()[-1])
    assert started["heavy"] == []
    assert started["rss_mb"] < 80


def test_no_template_carries_an_inline_event_handler():
    """The CSP refuses inline script, so an `onsubmit=`/`onclick=` silently does nothing
    (a delete would go without its question): templates use data-confirm and friends."""
    handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group().strip()}"
        for folder in ("templates", "jobs", "sheets")
        for path in sorted((ROOT / folder).rglob("*.html"))
        for match in handler.finditer(path.read_text())
    ]
    assert offenders == []
