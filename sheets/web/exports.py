"""A sheet job's results downloaded (CSV, XLSX; formulas neutralised in `sheets.io.export`)
or written back to the Google Sheet they came from."""

from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from jobs.models import Job
from jobs.public import (
    JobActionError,
    may_submit_for,
    token_or_login_required,
)
from sheets.io import export
from sheets.models import Sheet
from sheets.names import KIND
from sheets.services import (
    sheet_write_back,
)


def _export_source(request: HttpRequest, job_id: int) -> tuple[Job, Sheet]:
    job = get_object_or_404(Job.objects.visible_to(request.user).filter(kind=KIND), pk=job_id)
    sheet = get_object_or_404(Sheet, pk=job.params.get("sheet_id"))
    return job, sheet


def _filename(sheet: Sheet, job: Job, extension: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(sheet.name).stem)[:60]
    return f"{stem or 'sheet'}-job{job.pk}.{extension}"


@require_GET
@token_or_login_required  # scripts download with their API token (README's client)
def export_csv(request: HttpRequest, job_id: int) -> HttpResponse:
    job, sheet = _export_source(request, job_id)
    response = StreamingHttpResponse(
        export.csv_chunks(job, sheet), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(sheet, job, "csv")}"'
    return response


@require_GET
@token_or_login_required
def export_xlsx(request: HttpRequest, job_id: int) -> HttpResponse:
    job, sheet = _export_source(request, job_id)
    return FileResponse(
        export.xlsx_file(job, sheet),
        as_attachment=True,
        filename=_filename(sheet, job, "xlsx"),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


@require_POST
@login_required
def write_back(request: HttpRequest, job_id: int) -> HttpResponse:
    """Queue the write-back of a job's outputs: a job in the job owner's name, so theirs
    or for someone who may act for them (`selectors.may_submit_for`); else a 404."""
    job, sheet = _export_source(request, job_id)
    if not may_submit_for(request.user, job.owner_id):
        raise Http404("No job of yours matches the given query.")
    try:
        writer = sheet_write_back(job=job, sheet=sheet)
    except JobActionError as exc:
        messages.error(request, str(exc))
        return redirect(sheet)
    return redirect(writer)
