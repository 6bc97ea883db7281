"""`/healthz`: is the database reachable, the broker answering, a worker cluster alive?

Load balancers and `make run` read it; 200 only when all three hold, else 503 with
the failing part named.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.brokers import get_broker

from jobs.models import Worker


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - health reports any failure as data
        return {"ok": False, "error": str(exc)}


def _check_broker() -> dict:
    broker = get_broker()
    try:
        ok = bool(broker.ping())
        return {"ok": ok, "type": type(broker).__name__, "queued": broker.queue_size()}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "type": type(broker).__name__, "error": str(exc)}


def _check_workers() -> dict:
    try:
        workers = list(Worker.objects.alive().values("name", "cluster", "last_seen_at"))
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc)}
    clusters = sorted({w["cluster"] for w in workers})
    return {
        "ok": bool(workers),
        "workers": len(workers),
        "clusters": clusters,
        "error": "" if workers else "no worker cluster is running (start: manage.py qcluster)",
    }


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database()}
    if checks["database"]["ok"]:
        checks["broker"] = _check_broker()
        checks["cluster"] = _check_workers()
    else:
        checks["broker"] = {"ok": False, "error": "database unavailable"}
        checks["cluster"] = {"ok": False, "error": "database unavailable"}
    healthy = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if healthy else "unhealthy", **checks}
    return JsonResponse(body, status=200 if healthy else 503)
