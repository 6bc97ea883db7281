"""The staff metrics page and the JSON it polls for its charts (jobs/metrics.py)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from jobs.web.metrics import METHODS, WINDOWS, metrics

# Seconds between refreshes of the charts, per window (`?every=N` overrides, >= 1).
REFRESH_SECONDS = {"hour": 5, "day": 60, "week": 300, "month": 600}


def _window(request: HttpRequest) -> str:
    window = request.GET.get("window", "hour")
    return window if window in WINDOWS else "hour"


def _every(request: HttpRequest, window: str) -> int:
    value = request.GET.get("every", "")
    if value.isdecimal():
        return max(1, min(3600, int(value)))
    return REFRESH_SECONDS[window]


@require_GET
@staff_member_required
def metrics_page(request: HttpRequest) -> HttpResponse:
    window = _window(request)
    context = {
        "window": window,
        "windows": list(WINDOWS),
        "every": _every(request, window),
        "methods": METHODS,
    }
    return render(request, "jobs/metrics.html", context)


@never_cache
@require_GET
@staff_member_required
def metrics_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(metrics(_window(request)))
