"""The staff ops pages: kinds of work (pause, resume, cap a job kind, a Tasks queue or a
processor, with what each has running and waiting; force stop a running job with a
reason) and waiting work (scheduled, retry-waiting, dependency-waiting and held jobs,
when each will run and why it waits, with "run now" / "retry now").

Changes go through `jobs.actions.kinds` and the job registry (`jobs.actions.jobs`); the
tables re-read themselves every few seconds (htmx polling of their partial).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from jobs.actions.jobs import JOBS
from jobs.actions.kinds import ControlError, kind_cap, kind_list, kind_pause, kind_resume
from jobs.engine.errors import JobActionError
from jobs.engine.services import job_cancel
from jobs.models import Job
from jobs.serializers import waiting_of
from jobs.web.views import HtmxHttpRequest, render_list

RUNNING_SHOWN = 50
WAITING_PAGE = 50


def _counts() -> dict[str, dict[str, int]]:
    """Running and waiting jobs per kind and per sub-kind (one query: active jobs only)."""
    active = Job.objects.filter(status__in=Job.ACTIVE)
    running = Q(status=Job.Status.RUNNING) & ~Q(lease_owner="")
    counts: dict[str, dict[str, int]] = {}
    for field in ("kind", "subkind"):
        rows = active.values(field).annotate(running=Count("id", filter=running), all=Count("id"))
        for row in rows:
            if row[field]:
                counts[row[field]] = {
                    "running": row["running"],
                    "waiting": row["all"] - row["running"],
                }
    return counts


@require_GET
@staff_member_required
def kinds_page(request: HtmxHttpRequest) -> HttpResponse:
    counts = _counts()
    rows = [{**row, **counts.get(row["name"], {"running": 0, "waiting": 0})} for row in kind_list()]
    running = (
        Job.objects.filter(status=Job.Status.RUNNING)
        .exclude(lease_owner="")
        .select_related("owner")
        .order_by("started_at", "id")[:RUNNING_SHOWN]
    )
    return render_list(request, "jobs/ops_kinds.html", {"kinds": rows, "running": running})


@require_POST
@staff_member_required
def kind_change(request: HttpRequest, name: str, change: str) -> HttpResponse:
    try:
        if change == "pause":
            kind_pause(name, by=request.user, reason=request.POST.get("reason", ""))
            messages.success(request, f"{name} paused on every cluster.")
        elif change == "resume":
            kind_resume(name, by=request.user)
            messages.success(request, f"{name} resumed.")
        elif change == "cap":
            cap = request.POST.get("cap", "").strip()
            kind_cap(name, cap or None, by=request.user)
            messages.success(
                request, f"{name}: cap {'set to ' + cap if cap else 'back to the default'}."
            )
        else:
            return HttpResponse(f"Unknown change {change!r}.", status=400)
    except (ControlError, JobActionError) as exc:
        messages.error(request, str(exc))
    return redirect("ops:kinds")


@require_POST
@staff_member_required
def force_stop(request: HttpRequest, job_id: int) -> HttpResponse:
    """Force stop a running job with the operator's reason on its timeline."""
    job = get_object_or_404(Job, pk=job_id)
    action = JOBS["force-stop"]
    try:
        JOBS.check(request.user, job, action)
        if not action.applies(job):
            raise JobActionError(action.why_not(job))
        job_cancel(job=job, by=request.user, force=True, reason=request.POST.get("reason", ""))
        messages.success(request, f"Job #{job.pk} force-stopped.")
    except JobActionError as exc:
        messages.error(request, str(exc))
    return redirect("ops:kinds")


def _waiting_jobs():
    """Active jobs that wait for something: a time (scheduled, retry), the jobs they run
    after, or an operator's hold; soonest first, then oldest."""
    now = timezone.now()
    later = Q(run_after__gt=now) & Q(status__in=[Job.Status.QUEUED, Job.Status.RETRYING])
    held = Q(pk__in=Job.objects.held_back().values("pk"))
    jobs = Job.objects.filter(status__in=Job.ACTIVE).filter(
        later | Q(upstream_pending__gt=0) | held
    )
    return jobs.select_related("owner").order_by("run_after", "created_at", "id")


@require_GET
@staff_member_required
def waiting_page(request: HtmxHttpRequest) -> HttpResponse:
    page = Paginator(_waiting_jobs(), WAITING_PAGE).get_page(request.GET.get("page"))
    for job in page:
        job.waiting_reason, job.next_run_at, job.waiting_text = waiting_of(job)
        job.run_now = JOBS["run-now"].applies(job)
    return render_list(request, "jobs/ops_waiting.html", {"page": page})


@require_POST
@staff_member_required
def run_now(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    try:
        result = JOBS.act("run-now", job, request.user)
        messages.success(request, JOBS.said(JOBS["run-now"], job, result))
    except JobActionError as exc:
        messages.error(request, str(exc))
    return redirect("ops:waiting")
