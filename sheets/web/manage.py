"""Renaming and deleting a sheet (its owner only)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from jobs.models import Job
from jobs.public import (
    JobActionError,
)
from sheets.selectors import sheet_all_jobs, sheet_schedules
from sheets.services import sheet_delete, sheet_rename
from sheets.web.access import own_sheet


@require_POST
@login_required
def rename(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = own_sheet(request, sheet_id)
    try:
        sheet_rename(sheet=sheet, name=request.POST.get("name", ""))
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(sheet)
    messages.success(request, f"Renamed to “{sheet.name}”.")
    return redirect(sheet)


@require_http_methods(["GET", "POST"])
@login_required
def delete(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """GET asks for confirmation (what goes with the sheet: jobs, schedules); POST
    deletes, or refuses with a 409 while a job of the sheet is active."""
    sheet = own_sheet(request, sheet_id)
    jobs = sheet_all_jobs(sheet)
    schedules = list(sheet_schedules(sheet))
    context = {
        "sheet": sheet,
        "job_count": jobs.count(),
        "active": jobs.filter(status__in=Job.ACTIVE).order_by("pk"),
        "schedules": schedules,
    }
    if request.method == "GET":
        return render(request, "sheets/sheet_delete.html", context)
    try:
        deleted = sheet_delete(sheet=sheet)
    except JobActionError as exc:
        return render(
            request, "sheets/sheet_delete.html", {**context, "error": str(exc)}, status=409
        )
    gone = [f"{deleted} job{'s' if deleted != 1 else ''}"] if deleted else []
    if schedules:
        gone.append(f"{len(schedules)} schedule{'s' if len(schedules) != 1 else ''}")
    gone_text = f" and its {' and '.join(gone)}" if gone else ""
    messages.success(request, f"Deleted “{sheet.name}”{gone_text}.")
    return redirect("sheets:list")
