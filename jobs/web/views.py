"""Pages: home, the jobs dashboard, a job's live page, a batch's page, controls,
notifications.

Each page and its live fragments come from one template with named partials, so
what the relay pushes over the websocket is exactly what the page renders. Every
query goes through `jobs.selectors`, every control through the action registries
(`jobs.actions`): `/jobs/<id>/<action>/` and `/jobs/batches/<id>/<action>/` take any
of their entries.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from jobs import selectors
from jobs.actions.base import Registry
from jobs.actions.batches import BATCHES, each_job
from jobs.actions.jobs import JOBS
from jobs.engine.errors import InvalidChanges, JobActionError, UnknownKind
from jobs.engine.kinds import all_kinds
from jobs.engine.services import notifications_mark_read
from jobs.extensions import extension_for
from jobs.models import Job


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def unknown_action(registry: Registry, action: str) -> HttpResponse | None:
    """The 400 for a POST to an action the registry does not have, else None."""
    return None if action in registry else HttpResponse(f"Unknown action {action!r}.", status=400)


def render_list(request: HtmxHttpRequest, template: str, context: dict) -> HttpResponse:
    """A list page, or only its `#table` partial for htmx's filter and paging requests
    (a boosted link gets the whole page)."""
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(request, template, context)


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.filter(owner=request.user).select_related("owner")[:10]
    return render(request, "home.html", {"jobs": jobs, "actions": JOBS.values()})


def _parse_day(value: str) -> datetime | None:
    try:
        day = parse_date(value or "")
    except ValueError:  # well formed, no such day (2024-13-45)
        return None
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))


def filter_jobs(jobs: QuerySet[Job], params, user, *, status: bool = True) -> QuerySet[Job]:
    """The dashboard's filters: a status tab (unless `status` is False: the tabs' counts),
    kind, created date range (whole days), text (which matches the keys of `user`'s own
    jobs only, also on staff's list of everyone's)."""
    group = selectors.status_group(params.get("status", "")) if status else ""
    end = _parse_day(params.get("to", ""))
    return selectors.filter_jobs(
        jobs,
        statuses=[group] if group else [],
        kind=params.get("kind", ""),
        text="" if search_error(params) else params.get("q", ""),
        created_after=_parse_day(params.get("from", "")),
        created_before=end + timedelta(days=1) if end else None,
        keys_of=user,
    )


def search_error(params) -> str:
    """Why the search cannot be run as typed (a `path=value` term no kind offers), or ""."""
    try:
        selectors.search_terms(params.get("q", ""))
    except ValueError as exc:
        return f"Not searched: {exc}."
    return ""


@require_GET
@login_required
def job_list(request: HtmxHttpRequest) -> HttpResponse:
    all_users = request.user.is_staff and request.GET.get("all") == "1"
    jobs = selectors.visible_jobs(request.user)
    if not all_users:
        jobs = jobs.filter(owner=request.user)
    counts = selectors.status_counts(filter_jobs(jobs, request.GET, request.user, status=False))
    sort, order_by = selectors.sort_key(
        request.GET.get("sort", ""), selectors.JOB_SORTS, "-created"
    )
    jobs = filter_jobs(jobs, request.GET, request.user).order_by(*order_by, "-id")
    page = Paginator(jobs, 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    unsorted = query.copy()
    unsorted.pop("sort", None)
    context = {
        "page": page,
        "all_users": all_users,
        "filters": request.GET,
        "search_error": search_error(request.GET),
        "search_params": ", ".join(sorted(selectors.searchable_params())),
        "status": selectors.status_group(request.GET.get("status", "")),
        "query": query.urlencode(),
        "unsorted_query": unsorted.urlencode(),
        "sort": sort,
        "sortable": True,
        "filtered": any(request.GET.get(k) for k in ("status", "kind", "q", "from", "to")),
        "status_tabs": [
            (name, name.capitalize() or "All", counts[name])
            for name in ["", *selectors.STATUS_GROUPS]
        ],
        "actions": JOBS.values(),
        "kinds": all_kinds(),
    }
    return render_list(request, "jobs/job_list.html", context)


@require_GET
@login_required
def job_detail(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(selectors.visible_jobs(request.user), pk=job_id)
    # An unread notification means it finished since the user last looked.
    finished_while_away = job.is_terminal and bool(
        notifications_mark_read(user=request.user, job=job)
    )
    context = {
        "job": job,
        "events": selectors.recent_events(job),
        "finished_while_away": finished_while_away,
        **selectors.dependencies(request.user, job),
    }
    return render(request, "jobs/job_detail.html", context)


@require_POST
@login_required
def job_action(request: HtmxHttpRequest, job_id: int, action: str) -> HttpResponse:
    """Any entry of `JOBS`; htmx gets the job's live part back (or a 409 with the
    refusal), a plain form a message and the job's page."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
    if unknown := unknown_action(JOBS, action):
        return unknown
    changeable = extension_for(job.kind).resume_fields if action == "resume" else ()
    changes = {field: request.POST[field] for field in changeable if field in request.POST}
    try:
        result = JOBS.act(action, job, request.user, **({"changes": changes} if changes else {}))
    except (JobActionError, UnknownKind, InvalidChanges) as exc:
        if request.htmx:
            return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
        messages.error(request, str(exc))
        return redirect(job)
    said = JOBS.said(JOBS[action], job, result)
    if result is None:  # deleted
        messages.success(request, said)
        if request.htmx:
            return HttpResponseClientRedirect("/jobs/")
        return redirect("jobs:list")
    if request.htmx:
        job.refresh_from_db()
        live_id = request.POST.get("live_id", "")[:100]
        return render(request, "jobs/job_detail.html#live", {"job": job, "live_id": live_id})
    messages.success(request, said)
    return redirect(job)


def _say(request: HttpRequest, lines: list[str]) -> None:
    """A count of what changed, then (a warning) what was skipped and why."""
    messages.success(request, lines[0])
    for line in lines[1:]:
        messages.warning(request, line)


@require_POST
@login_required
def job_bulk(request: HttpRequest) -> HttpResponse:
    """Apply one action to the selected jobs; report how many changed and why others didn't."""
    action = request.POST.get("action", "")
    back = request.POST.get("next") or "/jobs/"
    if not back.startswith("/") or back.startswith("//"):
        back = "/jobs/"
    if action not in JOBS:
        messages.error(request, "Choose an action for the selected jobs.")
        return redirect(back)
    ids = [int(v) for v in request.POST.getlist("ids") if v.isdigit()][:500]
    if not ids:
        messages.error(request, "Select at least one job.")
        return redirect(back)
    chosen = Job.objects.visible_to(request.user).filter(pk__in=ids).order_by("pk")
    _say(request, each_job(chosen, action, request.user).lines(JOBS[action].done))
    return redirect(back)


@require_http_methods(["GET", "POST"])
@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    """The user's notifications, newest first; `?entity=KEY` / `?session=KEY` keep those
    about their jobs with that key (a trailing `*` matches keys starting with the rest)."""
    if request.method == "POST":
        notifications_mark_read(user=request.user)
        messages.success(request, "All notifications marked as read.")
        return redirect("jobs:notifications")
    keys = {
        field: typed
        for field, name in (("entity_key", "entity"), ("session_key", "session"))
        if (typed := _typed_key(request.GET.get(name, "")))
    }
    mine = selectors.notifications_with_keys(request.user, keys).select_related("job")
    page = Paginator(mine, 30).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"page": page, "filters": request.GET, "query": query.urlencode()}
    return render(request, "jobs/notifications.html", context)


def _typed_key(value: str) -> tuple[str, bool] | None:
    """A key typed in a filter as (key, is_prefix): a trailing `*` makes it a prefix;
    None when there is nothing to match."""
    value = value.replace("\x00", "").strip()[: selectors.MAX_SEARCH]
    key = value.removesuffix("*")
    return (key, key != value) if key else None


@require_GET
@login_required
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    """A batch's one progress and its jobs, live (the relay pushes `#live`)."""
    batch = get_object_or_404(selectors.visible_batches(request.user), pk=batch_id)
    notifications_mark_read(user=request.user, batch=batch)  # its toast was seen here
    context = {
        "batch": batch,
        "progress": selectors.batch_progress(batch),
        "actions": JOBS.values(),
    }
    return render(request, "jobs/batch_detail.html", context)


@require_POST
@login_required
def batch_action(request: HttpRequest, batch_id: int, action: str) -> HttpResponse:
    """Any entry of `BATCHES`: a job action on every job of the batch it applies to."""
    batch = get_object_or_404(selectors.visible_batches(request.user), pk=batch_id)
    if unknown := unknown_action(BATCHES, action):
        return unknown
    outcome = BATCHES.act(action, batch, request.user)
    _say(request, outcome.lines(BATCHES[action].done))
    return redirect(batch)
