"""The Schedules page: the user's schedules with their next run and how the last one
went, and the buttons of the registry `jobs.actions.schedules.SCHEDULES` (POST forms
to `/schedules/<id>/<action>/`). The table refreshes itself every few seconds (htmx polling
of its partial), so next and last runs stay current without a reload.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from jobs import selectors
from jobs.actions.schedules import SCHEDULES
from jobs.engine.errors import JobActionError
from jobs.web.views import HtmxHttpRequest, render_list, unknown_action


@require_GET
@login_required
def schedule_list(request: HtmxHttpRequest) -> HttpResponse:
    all_users = request.user.is_staff and request.GET.get("all") == "1"
    rows = selectors.visible_schedules(request.user).order_by("name", "pk")
    if not all_users:
        rows = rows.filter(owner=request.user)
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    for schedule in page:
        schedule.offered = [action for action in SCHEDULES.values() if action.applies(schedule)]
    context = {"page": page, "all_users": all_users}
    return render_list(request, "jobs/schedule_list.html", context)


@require_POST
@login_required
def schedule_action(request: HttpRequest, schedule_id: int, action: str) -> HttpResponse:
    found = get_object_or_404(selectors.visible_schedules(request.user), pk=schedule_id)
    if unknown := unknown_action(SCHEDULES, action):
        return unknown
    try:
        result = SCHEDULES.act(action, found, request.user)
        messages.success(request, SCHEDULES.said(SCHEDULES[action], found, result))
    except JobActionError as exc:
        messages.error(request, str(exc))
    return redirect("schedules:list")
