"""Sheet pages: list and upload, a sheet's page (preview, start a job, its live job and
results), options form fragments, results table fragments, exports, write-back.

A sheet's page subscribes to the sheet's entity key, so it finds its running job
after any navigation and follows whichever job is the sheet's latest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.engine.errors import JobActionError, QuotaExceeded
from jobs.engine.services import notifications_mark_read
from jobs.models import Job, parse_priority
from jobs.selectors import sort_key
from sheets import export
from sheets.importing import preview_rows, sheet_from_google, sheet_from_upload
from sheets.kinds import IMPORT, KIND, SheetParamsError, entity_key
from sheets.models import RowResult, Sheet
from sheets.processors import all_processors, get_processor
from sheets.processors.base import UnknownProcessor
from sheets.services import (
    sheet_delete,
    sheet_job_submit,
    sheet_jobs,
    sheet_rename,
    sheet_upload,
    sheet_write_back,
)
from sheets.sources import SourceError

SAMPLE = Path(__file__).parent / "samples" / "contacts.csv"
RESULTS_PER_PAGE = 50
PRIORITIES = ["high", "normal", "low"]
HISTORY = 20  # jobs listed in a sheet's job history
ISSUES = "issues"  # an output column some processors fill with what they found wrong


def _visible_sheet(request: HttpRequest, sheet_id: int) -> Sheet:
    return get_object_or_404(Sheet.objects.visible_to(request.user), pk=sheet_id)


def _own_sheet(request: HttpRequest, sheet_id: int) -> Sheet:
    """Renaming and deleting: the owner's own sheets only (staff too see, not change)."""
    return get_object_or_404(Sheet, pk=sheet_id, owner=request.user)


def _sheet_jobs(sheet: Sheet):
    return Job.objects.filter(kind=KIND, owner=sheet.owner_id, entity_key=entity_key(sheet))


def _latest_jobs(sheets: list[Sheet]) -> dict[int, Job]:
    keys = {entity_key(s): s.pk for s in sheets}
    latest: dict[int, Job] = {}
    for job in Job.objects.filter(kind=KIND, entity_key__in=keys).order_by("created_at", "id"):
        latest[keys[job.entity_key]] = job
    return latest


# -- list and upload -------------------------------------------------------------------


# The sheets list's sortable columns: the `sort` parameter (a leading "-" for descending)
# to the fields ordered by; anything else is ignored (newest first).
SHEET_SORTS = {"name": ("name",), "rows": ("row_count",), "created": ("created_at",)}


def _render_list(request: HttpRequest, error: str = "", status: int = 200) -> HttpResponse:
    sort, order_by = sort_key(request.GET.get("sort", ""), SHEET_SORTS, default="-created")
    sheets = Sheet.objects.filter(owner=request.user).order_by(*order_by, "-id")
    page = Paginator(sheets, 25).get_page(request.GET.get("page"))
    latest = _latest_jobs(list(page.object_list))
    rows = [(sheet, latest.get(sheet.pk)) for sheet in page.object_list]
    context = {"page": page, "rows": rows, "error": error, "max_mb": _max_mb(), "sort": sort}
    return render(request, "sheets/sheet_list.html", context, status=status)


def _max_mb() -> int:
    return settings.CONVEYOR_MAX_UPLOAD_BYTES // (1024 * 1024)


@require_GET
@login_required
def sheet_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@require_POST
@login_required
def upload(request: HttpRequest) -> HttpResponse:
    """A file or a Google Sheet link in, a Sheet out, or a clear message and nothing made."""
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.CONVEYOR_MAX_UPLOAD_BYTES + 64 * 1024:
        return _render_list(request, f"The file is larger than the {_max_mb()} MB limit.", 413)
    file = request.FILES.get("file")
    link = request.POST.get("google_url", "").strip()
    worksheet = request.POST.get("worksheet", "").strip() or None
    try:
        if file is not None:
            sheet = sheet_upload(upload=file, owner=request.user, worksheet=worksheet)
        elif link:
            sheet = sheet_from_google(url_or_id=link, owner=request.user, worksheet=worksheet)
        else:
            return _render_list(
                request, "Choose a CSV or XLSX file, or paste a Google Sheet link.", 400
            )
    except SourceError as exc:
        return _render_list(request, str(exc), 400)
    if sheet.is_ready:
        rows = "1 row" if sheet.row_count == 1 else f"{sheet.row_count} rows"
        messages.success(request, f"Imported {rows} from {sheet.name}.")
    else:
        messages.info(request, f"Importing {sheet.name} in the background: follow it below.")
    return redirect(sheet)


@require_POST
@login_required
def sample(request: HttpRequest) -> HttpResponse:
    """Import the bundled sample sheet: a job is then one click away."""
    upload = SimpleUploadedFile(SAMPLE.name, SAMPLE.read_bytes(), "text/csv")
    sheet = sheet_from_upload(upload=upload, owner=request.user)
    return redirect(f"{sheet.get_absolute_url()}?processor=clean")


# -- a sheet's page --------------------------------------------------------------------


def _option_fields(processor, sheet: Sheet, values: dict[str, Any], errors: dict[str, str]):
    fields = []
    for option in processor.options:
        value = values.get(option.name, option.initial())
        if option.type == "columns" and isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        if option.type == "secret":
            value = ""  # never echo a secret back into the page
        fields.append({"option": option, "value": value, "error": errors.get(option.name, "")})
    return fields


def _form_context(sheet: Sheet, job: Job | None, data: dict[str, Any], errors: dict[str, str]):
    """The start form, prefilled from what was posted, else from the sheet's last job."""
    previous = job.params if job is not None else {}
    name = data.get("processor") or previous.get("processor") or "clean"
    try:
        processor = get_processor(name)
    except UnknownProcessor:
        processor = get_processor("clean")
    same = previous.get("processor") == processor.name
    values = data.get("options") or (previous.get("options", {}) if same else {})
    return {
        "processors": all_processors(),
        "processor": processor,
        "notice": processor.notice(values),
        "option_fields": _option_fields(processor, sheet, values, errors),
        "chosen_columns": data.get("columns") or previous.get("columns") or sheet.columns,
        "start_row": data.get("start_row", previous.get("start_row", 1)),
        "row_count": data.get("row_count", ""),
        "priority": data.get("priority", "normal"),
        "priorities": PRIORITIES,
        "errors": errors,
    }


def _render_sheet(
    request: HttpRequest,
    sheet: Sheet,
    data: dict | None = None,
    errors: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    history = list(_sheet_jobs(sheet).order_by("-created_at", "-id")[:HISTORY])
    job = history[0] if history else None
    finished_while_away = False
    if job is not None and job.is_terminal:
        finished_while_away = bool(notifications_mark_read(user=request.user, job=job))
    # ?job=N shows the results of an earlier job of this sheet (from its job history).
    asked = request.GET.get("job", "")
    shown = next((j for j in history if str(j.pk) == asked), None) or job
    context = {
        "sheet": sheet,
        "job": job,
        "history": history,
        "live_id": "current-job-live",
        "finished_while_away": finished_while_away,
        "preview": preview_rows(sheet, limit=10),
        **_form_context(
            sheet, job, data or {"processor": request.GET.get("processor")}, errors or {}
        ),
        **(_results_context(request, sheet, shown) if shown is not None else {}),
    }
    return render(request, "sheets/sheet_detail.html", context, status=status)


@require_GET
@login_required
def sheet_detail(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _visible_sheet(request, sheet_id)
    if not sheet.is_ready:
        return _render_importing(request, sheet)
    return _render_sheet(request, sheet)


@require_POST
@login_required
def rename(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _own_sheet(request, sheet_id)
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
    """GET asks for confirmation (what goes with the sheet); POST deletes, or refuses with
    a 409 while a job of the sheet is active."""
    sheet = _own_sheet(request, sheet_id)
    jobs = sheet_jobs(sheet)
    context = {
        "sheet": sheet,
        "job_count": jobs.count(),
        "active": jobs.filter(status__in=Job.ACTIVE).order_by("pk"),
    }
    if request.method == "GET":
        return render(request, "sheets/sheet_delete.html", context)
    try:
        deleted = sheet_delete(sheet=sheet)
    except JobActionError as exc:
        return render(
            request, "sheets/sheet_delete.html", {**context, "error": str(exc)}, status=409
        )
    jobs_text = f" and its {deleted} job{'s' if deleted != 1 else ''}" if deleted else ""
    messages.success(request, f"Deleted “{sheet.name}”{jobs_text}.")
    return redirect("sheets:list")


def _render_importing(request: HttpRequest, sheet: Sheet, status: int = 200) -> HttpResponse:
    """A sheet whose upload is still being imported (or failed to): its import job, live."""
    job = Job.objects.filter(kind=IMPORT, entity_key=entity_key(sheet)).order_by("-pk").first()
    context = {"sheet": sheet, "job": job}
    return render(request, "sheets/sheet_importing.html", context, status=status)


@require_GET
@login_required
def options_form(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _visible_sheet(request, sheet_id)
    context = _form_context(sheet, None, {"processor": request.GET.get("processor", "")}, {})
    return render(request, "sheets/sheet_detail.html#options", {"sheet": sheet, **context})


def _posted_options(processor, post) -> dict[str, Any]:
    """Option values from the form; empty fields fall back to the processor's defaults."""
    options: dict[str, Any] = {}
    for option in processor.options:
        key = f"opt_{option.name}"
        if option.type == "columns":
            chosen = [c for c in post.getlist(key) if c]
            if chosen:
                options[option.name] = chosen
        elif option.type == "bool":
            if key in post:
                options[option.name] = post.getlist(key)[-1]
        elif (value := post.get(key, "")) != "":
            options[option.name] = value
    return options


def _staff_only_priority(request: HttpRequest, value: str) -> bool:
    """An integer priority outside high/normal/low: only staff may jump the queue."""
    if request.user.is_staff or value in PRIORITIES:
        return False
    try:
        parse_priority(value)
    except ValueError:
        return False  # not a priority at all: the service says so
    return True


@require_POST
@login_required
def start(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _visible_sheet(request, sheet_id)
    if not sheet.is_ready:
        return _render_importing(request, sheet, status=409)
    post = request.POST
    data: dict[str, Any] = {
        "processor": post.get("processor", ""),
        "columns": post.getlist("columns"),
        "start_row": post.get("start_row", ""),
        "row_count": post.get("row_count", ""),
        "priority": post.get("priority", "").strip().lower() or "normal",
    }
    if _staff_only_priority(request, data["priority"]):
        errors = {"priority": "Choose high, normal or low (other priorities are for staff)."}
        return _render_sheet(request, sheet, data, errors, 400)
    try:
        data["options"] = _posted_options(get_processor(data["processor"]), post)
        job, created = sheet_job_submit(
            sheet=sheet,
            owner=sheet.owner,
            processor=data["processor"],
            options=data["options"],
            columns=data["columns"] or None,
            start_row=data["start_row"],
            row_count=data["row_count"],
            row_timeout=post.get("row_timeout", ""),
            priority=data["priority"],
        )
    except UnknownProcessor as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 400)
    except SheetParamsError as exc:
        return _render_sheet(request, sheet, data, exc.errors, 400)
    except QuotaExceeded as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 429)
    except ValueError as exc:  # priority
        return _render_sheet(request, sheet, data, {"priority": str(exc)}, 400)
    if not created:
        messages.info(request, f"This sheet already has an active job (#{job.pk}); here it is.")
        return redirect(sheet)
    if post.get("mode") == "background":
        messages.success(
            request,
            f"“{job.title}” is running in the background (job #{job.pk}). "
            "You'll get a notification when it finishes.",
        )
        return redirect("sheets:list")
    return redirect(sheet)


# -- results, export, write-back -------------------------------------------------------


def _results_context(request: HttpRequest, sheet: Sheet, job: Job) -> dict[str, Any]:
    shown = request.GET.get("errors", "")
    errors_only = shown == "1"
    outputs = job.params.get("output_columns", [])
    issues_only = shown == ISSUES and ISSUES in outputs
    order = request.GET.get("order") or ("latest" if job.is_active else "row")
    results = RowResult.objects.filter(job=job)
    with_issues = results.filter(failed=False, outputs__has_key=ISSUES).exclude(outputs__issues="")
    if errors_only:
        results = results.filter(failed=True)
    elif issues_only:
        results = with_issues
    results = (
        results.order_by("-updated_at", "-row_number")
        if order == "latest"
        else results.order_by("row_number")
    )
    page = Paginator(results, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    numbers = [r.row_number for r in page.object_list]
    inputs = dict(sheet.rows.filter(number__in=numbers).values_list("number", "values"))
    columns = job.params.get("columns", sheet.columns)
    index = [sheet.columns.index(c) for c in columns if c in sheet.columns]
    table = [
        {
            "result": result,
            "inputs": [
                (inputs.get(result.row_number) or [""] * len(sheet.columns))[i] for i in index
            ],
            "outputs": [result.outputs.get(c, "") for c in outputs],
        }
        for result in page.object_list
    ]
    return {
        "results_job": job,
        "results_page": page,
        "results_table": table,
        "input_columns": columns,
        "output_columns": outputs,
        "errors_only": errors_only,
        "issues_only": issues_only,
        "shown": "1" if errors_only else ISSUES if issues_only else "",
        "issues_count": with_issues.count() if ISSUES in outputs else None,
        "order": order,
    }


@require_GET
@login_required
def results(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _visible_sheet(request, sheet_id)
    jobs = _sheet_jobs(sheet)
    asked = request.GET.get("job", "")
    job = (jobs.filter(pk=int(asked)).first() if asked.isascii() and asked.isdigit() else None) or (
        jobs.order_by("-created_at", "-id").first()
    )
    if job is None:
        return HttpResponse("", status=204)
    context = {"sheet": sheet, **_results_context(request, sheet, job)}
    return render(request, "sheets/sheet_detail.html#results", context)


def _export_source(request: HttpRequest, job_id: int) -> tuple[Job, Sheet]:
    job = get_object_or_404(Job.objects.visible_to(request.user).filter(kind=KIND), pk=job_id)
    sheet = get_object_or_404(Sheet, pk=job.params.get("sheet_id"))
    return job, sheet


def _filename(sheet: Sheet, job: Job, extension: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(sheet.name).stem)[:60]
    return f"{stem or 'sheet'}-job{job.pk}.{extension}"


@require_GET
@login_required
def export_csv(request: HttpRequest, job_id: int) -> HttpResponse:
    job, sheet = _export_source(request, job_id)
    response = StreamingHttpResponse(
        export.csv_chunks(job, sheet), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(sheet, job, "csv")}"'
    return response


@require_GET
@login_required
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
    job, sheet = _export_source(request, job_id)
    try:
        writer = sheet_write_back(job=job, sheet=sheet)
    except JobActionError as exc:
        messages.error(request, str(exc))
        return redirect(sheet)
    return redirect(writer)
