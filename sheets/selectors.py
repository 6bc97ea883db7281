"""Reads of the sheets app shared by pages, CLI and services: which sheets a user may see
or run, a sheet's jobs (its import, the job its page follows, all of them), its
schedules, a job's results page. Writes are in `sheets.services`; a sheet's chain of
steps is read by `sheets.chains`.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from jobs.models import Job, Schedule
from jobs.public import may_submit_for
from sheets.chains import chain_progress, sheet_jobs
from sheets.models import RowResult, Sheet
from sheets.names import IMPORT, KIND, WRITE_BACK, entity_key
from sheets.rows import budget

ISSUES = "issues"  # an output column some processors fill with what they found wrong


def sheets_of(owner, order_by: tuple[str, ...]) -> QuerySet[Sheet]:
    """The sheets list: the owner's own sheets (others' are never listed there)."""
    return Sheet.objects.filter(owner=owner).order_by(*order_by, "-id")


def sheet_to_run(user, sheet_id: int) -> Sheet | None:
    """The sheet `user` may start work on: their own, or another user's if they may act
    for that user (`may_submit_for`); work is submitted in the sheet owner's name."""
    sheet = Sheet.objects.visible_to(user).filter(pk=sheet_id).first()
    if sheet is None or not may_submit_for(user, sheet.owner_id):
        return None
    return sheet


def current_job(sheet: Sheet) -> Job | None:
    """The job the sheet's page follows live: its latest, or the chain's current step."""
    latest = sheet_jobs(sheet).order_by("-created_at", "-id").first()
    chain = chain_progress(latest) if latest is not None else None
    return chain.current if chain is not None else latest


def import_job(sheet: Sheet) -> Job | None:
    """The sheet's latest import job (a large upload's)."""
    jobs = Job.objects.filter(kind=IMPORT, owner_id=sheet.owner_id, entity_key=entity_key(sheet))
    return jobs.order_by("-pk").first()


def jobs_waiting_for_import(sheet: Sheet) -> QuerySet[Job]:
    """The owner's runs queued on a sheet still being imported."""
    return Job.objects.filter(
        kind=KIND, owner_id=sheet.owner_id, params__sheet_id=sheet.pk, status__in=Job.ACTIVE
    ).order_by("pk")


def sheet_all_jobs(sheet: Sheet) -> QuerySet[Job]:
    """Every job of the sheet's owner that works on the sheet: its imports, its runs and
    its pipeline steps, and the write-backs of those runs (which read their results).
    Keys belong to their owner: another user's job is never one of them, whatever key
    it carries."""
    key = entity_key(sheet)
    on_sheet = Q(entity_key=key) | Q(entity_key__startswith=f"{key}:")
    owners = Job.objects.filter(owner_id=sheet.owner_id)
    runs = owners.filter(kind=KIND).filter(on_sheet).values_list("pk", flat=True)
    writers = [f"write-back:{pk}" for pk in runs]  # sheet_write_back's entity key
    return owners.filter(
        (Q(kind__in=[KIND, IMPORT]) & on_sheet) | Q(kind=WRITE_BACK, entity_key__in=writers)
    )


def others_active_on(sheet: Sheet) -> bool:
    """Whether another user's job is processing the sheet's rows: a job someone with
    the permission to act for its owner started on it (`may_submit_for`)."""
    jobs = Job.objects.active().filter(kind=KIND, params__sheet_id=sheet.pk)
    return jobs.exclude(owner_id=sheet.owner_id).exists()


def sheet_schedules(sheet: Sheet) -> QuerySet[Schedule]:
    """The schedules that process the sheet: without it their runs could only fail."""
    return Schedule.objects.filter(kind=KIND, params__sheet_id=sheet.pk).order_by("pk")


def results_with_issues(job: Job) -> QuerySet[RowResult]:
    """The job's rows that succeeded with something to say in their `issues` output."""
    results = RowResult.objects.filter(job=job, failed=False, outputs__has_key=ISSUES)
    return results.exclude(outputs__issues="")


def job_results(job: Job, *, shown: str, latest_first: bool) -> QuerySet[RowResult]:
    """The job's row results for its results table: all, the failed ones (`shown`
    "errors") or those with issues ("issues"); by row, or the latest first (a job that
    is running shows its new rows on top)."""
    if shown == "errors":
        results = RowResult.objects.filter(job=job, failed=True)
    elif shown == ISSUES:
        results = results_with_issues(job)
    else:
        results = RowResult.objects.filter(job=job)
    if latest_first:
        return results.order_by("-updated_at", "-row_number")
    return results.order_by("row_number")


def row_inputs(sheet: Sheet, numbers: list[int]) -> dict[int, list[str]]:
    """The values of the sheet's rows of these numbers, by number."""
    return dict(sheet.rows.filter(number__in=numbers).values_list("number", "values"))


def paused_at_budget(job: Job | None) -> dict[str, object] | None:
    """The budget of a job paused at it (what the resume form shows), else None."""
    if job is None or job.status != Job.Status.PAUSED or not job.message.startswith(budget.REACHED):
        return None
    options = (job.params or {}).get("options") or {}
    return {name: options.get(name) for name in ("budget_tokens", "budget_usd")}


def monthly_budget_of(user) -> list[dict[str, str]]:
    """The user's spending this month against each monthly ceiling the operator set."""
    ceilings = budget.monthly_ceilings()
    if not ceilings or not getattr(user, "is_authenticated", False):
        return []
    spent = budget.spent_this_month(user.pk)
    return [
        {
            "spent": budget.shown(what, budget.amount_of(what, spent)),
            "limit": budget.shown(what, limit),
        }
        for what, limit in ceilings.items()
    ]
