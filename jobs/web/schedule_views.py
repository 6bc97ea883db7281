"""The Schedules page: the user's schedules with their next run and how the last one
went, and the pause, resume, run-now and delete buttons (POST forms, through
`jobs.schedules.services`). The table refreshes itself every few seconds (htmx polling
of its partial), so next and last runs stay current without a reload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from jobs import selectors
from jobs.engine.errors import JobActionError
from jobs.models import Schedule
from jobs.schedules.services import (
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_run_now,
)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _run_now(*, schedule: Schedule, by: Any) -> str:
    job = schedule_run_now(schedule=schedule, by=by)
    return f"Schedule #{schedule.pk}: job #{job.pk} started."


def _pause(*, schedule: Schedule, by: Any) -> str:
    schedule_pause(schedule=schedule, by=by)
    return f"Schedule #{schedule.pk} paused."


def _resume(*, schedule: Schedule, by: Any) -> str:
    schedule_resume(schedule=schedule, by=by)
    return f"Schedule #{schedule.pk} resumed."


def _delete(*, schedule: Schedule, by: Any) -> str:
    schedule_delete(schedule=schedule, by=by)
    return f"Schedule #{schedule.pk} deleted; its jobs stay."


# action name -> (what it does, the model permission needed on someone else's schedule)
ACTIONS: dict[str, tuple[Callable[..., str], str]] = {
    "pause": (_pause, "change"),
    "resume": (_resume, "change"),
    "run-now": (_run_now, "change"),
    "delete": (_delete, "delete"),
}


@require_GET
@login_required
def schedule_list(request: HtmxHttpRequest) -> HttpResponse:
    all_users = request.user.is_staff and request.GET.get("all") == "1"
    rows = selectors.visible_schedules(request.user).order_by("name", "pk")
    if not all_users:
        rows = rows.filter(owner=request.user)
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    context = {"page": page, "all_users": all_users}
    template = "jobs/schedule_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(request, template, context)


@require_POST
@login_required
def schedule_action(request: HttpRequest, schedule_id: int, action: str) -> HttpResponse:
    found = get_object_or_404(selectors.visible_schedules(request.user), pk=schedule_id)
    if action not in ACTIONS:
        return HttpResponse(f"Unknown action {action!r}.", status=400)
    run, permission = ACTIONS[action]
    try:
        selectors.check_may_act_on_schedule(request.user, found, permission)
        messages.success(request, run(schedule=found, by=request.user))
    except JobActionError as exc:
        messages.error(request, str(exc))
    return redirect("schedules:list")
