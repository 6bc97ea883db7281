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
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.models import Job, parse_priority
from jobs.public import (
    JobActionError,
    QuotaExceeded,
    may_submit_for,
    notifications_mark_read,
    priority_for,
    sort_key,
)
from sheets.chains import chain_progress, latest_steps, sheet_jobs, with_new_results
from sheets.estimate import (
    CHARS_PER_TOKEN,
    DEFAULT_COMPLETION_TOKENS,
    estimate_run,
    price_text,
    prompt_for_row,
)
from sheets.io import export
from sheets.io.importing import preview_rows, sheet_from_google, sheet_from_upload
from sheets.io.sources import SourceError
from sheets.kinds import IMPORT, KIND, SheetParamsError, entity_key, validate_params
from sheets.models import RowResult, Sheet
from sheets.processors import all_processors, get_processor
from sheets.processors.base import UnknownProcessor
from sheets.services import (
    sheet_all_jobs,
    sheet_chain_submit,
    sheet_delete,
    sheet_job_submit,
    sheet_rename,
    sheet_schedules,
    sheet_seen,
    sheet_upload,
    sheet_write_back,
    sheets_upload,
)

SAMPLE = Path(__file__).parent / "samples" / "contacts.csv"
RESULTS_PER_PAGE = 50
PRIORITIES = ["high", "normal", "low"]
HISTORY = 20  # jobs listed in a sheet's job history
ISSUES = "issues"  # an output column some processors fill with what they found wrong
TOKENS = "tokens"  # the llm processor's tokens of a row's request
REUSED_TOKENS = "0 (reused)"
THEN_STEPS = 2  # "then run …" steps the start form offers after the first
TRIAL_ROWS = 5
WATCHING = "conveyor_watching_sheet"  # session: the sheet whose job the user just started
TYPED_SECRET = "(typed)"  # the options notice's stand-in for a key typed in the form
FIELD_LABELS = {
    "processor": "Processor",
    "columns": "Input columns",
    "start_row": "Start row",
    "row_count": "Number of rows",
    "preview_row": "Preview row",
    "sheet_id": "Sheet",
}


def _visible_sheet(request: HttpRequest, sheet_id: int) -> Sheet:
    return get_object_or_404(Sheet.objects.visible_to(request.user), pk=sheet_id)


def _sheet_to_run(request: HttpRequest, sheet_id: int) -> Sheet:
    """Starting work on a sheet (a run, a trial, a chain, a run queued behind its import)
    submits in the sheet owner's name: the owner's own, or for someone with the permission
    to act for another user (`selectors.may_submit_for`). Anyone else, staff included,
    gets a 404, as for renaming or deleting."""
    sheet = _visible_sheet(request, sheet_id)
    if not may_submit_for(request.user, sheet.owner_id):
        raise Http404("No sheet of yours matches the given query.")
    return sheet


def _own_sheet(request: HttpRequest, sheet_id: int) -> Sheet:
    """Renaming and deleting: the owner's own sheets only (staff too see, not change)."""
    return get_object_or_404(Sheet, pk=sheet_id, owner=request.user)


def _sheet_jobs(sheet: Sheet):
    return sheet_jobs(sheet)


# -- list and upload -------------------------------------------------------------------


# The sheets list's sortable columns: the `sort` parameter (a leading "-" for descending)
# to the fields ordered by; anything else is ignored (newest first).
SHEET_SORTS = {"name": ("name",), "rows": ("row_count",), "created": ("created_at",)}


def _render_list(request: HttpRequest, error: str = "", status: int = 200) -> HttpResponse:
    sort, order_by = sort_key(request.GET.get("sort", ""), SHEET_SORTS, default="-created")
    sheets = Sheet.objects.filter(owner=request.user).order_by(*order_by, "-id")
    page = Paginator(sheets, 25).get_page(request.GET.get("page"))
    latest = latest_steps(list(page.object_list))
    rows = [(sheet, latest.get(sheet.pk)) for sheet in page.object_list]
    context = {
        "page": page,
        "rows": rows,
        "new_results": with_new_results(list(page.object_list)),
        "error": error,
        "max_mb": _max_mb(),
        "processors": all_processors(),
        "sort": sort,
    }
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
    files = request.FILES.getlist("file")
    file = files[0] if files else None
    link = request.POST.get("google_url", "").strip()
    worksheet = request.POST.get("worksheet", "").strip() or None
    if len(files) > 1:
        return _upload_several(request, files, worksheet)
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
    except QuotaExceeded as exc:  # a large file's import job
        return _render_list(request, str(exc), 429)
    if sheet.is_ready:
        rows = "1 row" if sheet.row_count == 1 else f"{sheet.row_count} rows"
        messages.success(request, f"Imported {rows} from {sheet.name}.")
    else:
        messages.info(request, f"Importing {sheet.name} in the background: follow it below.")
    return redirect(sheet)


def _upload_several(request: HttpRequest, files: list, worksheet: str | None) -> HttpResponse:
    """Several files: all of them imported (and, with a processor, run as one batch), or
    none, and a message naming the refused file. `sheets_upload` parses every file before
    it writes anything, so no transaction (no SQLite write lock) waits on the parsing."""
    processor = request.POST.get("processor", "").strip()
    try:
        sheets, batch = sheets_upload(
            uploads=files, owner=request.user, worksheet=worksheet, processor=processor
        )
    except (SourceError, UnknownProcessor) as exc:
        return _render_list(request, f"{exc} Nothing was imported.", 400)
    except SheetParamsError as exc:
        name = getattr(exc, "file", "") or getattr(getattr(exc, "sheet", None), "name", "")
        refused = f"{name}: {exc}" if name else str(exc)
        return _render_list(request, f"{refused} Nothing was imported.", 400)
    except QuotaExceeded as exc:
        return _render_list(request, str(exc), 429)
    except JobActionError as exc:
        return _render_list(request, str(exc), 409)
    if batch is None:
        messages.success(request, f"Imported {len(sheets)} sheets.")
        return redirect("sheets:list")
    messages.success(request, f"Imported {len(sheets)} sheets; batch #{batch.pk} is running.")
    return redirect(batch)


@require_POST
@login_required
def sample(request: HttpRequest) -> HttpResponse:
    """Import the bundled sample sheet: a job is then one click away."""
    upload = SimpleUploadedFile(SAMPLE.name, SAMPLE.read_bytes(), "text/csv")
    sheet = sheet_from_upload(upload=upload, owner=request.user)
    return redirect(f"{sheet.get_absolute_url()}?processor=clean")


# -- a sheet's page --------------------------------------------------------------------


def _option_fields(
    processor,
    sheet: Sheet,
    values: dict[str, Any],
    errors: dict[str, str],
    typed_secrets: frozenset[str] = frozenset(),
):
    """The option fields, filled with `values`; a secret never (`typed_secrets`: those
    the user typed in a form that came back with errors, who must type them again)."""
    fields = []
    for option in processor.options:
        value = values.get(option.name, option.initial())
        if option.type == "columns" and isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        if option.type == "secret":
            value = ""  # never echo a secret back into the page
        fields.append(
            {
                "option": option,
                "value": value,
                "error": errors.get(option.name, ""),
                "retype": option.name in typed_secrets,
            }
        )
    return fields


def _secret_names() -> set[str]:
    """Names of the secret options of every processor (the "then run" steps' options are
    typed as text, for any processor)."""
    return {o.name for p in all_processors() for o in p.options if o.type == "secret"}


def _shown_step(step: dict[str, str]) -> dict[str, str]:
    """A "then run" step as the page shows it again: without its secret options' lines
    (`api_key=…`), which `retype` names so the user types them again."""
    secrets = _secret_names()
    kept, dropped = [], []
    for line in step["options"].splitlines():
        name = line.partition("=")[0].strip()
        (dropped if name in secrets else kept).append((name, line))
    if not dropped:
        return step
    retype = ", ".join(dict.fromkeys(name for name, _ in dropped))
    return {**step, "options": "\n".join(line for _, line in kept), "retype": retype}


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
        "option_fields": _option_fields(
            processor, sheet, values, errors, data.get("typed_secrets", frozenset())
        ),
        "chosen_columns": data.get("columns") or previous.get("columns") or sheet.columns,
        "start_row": data.get("start_row", previous.get("start_row", 1)),
        "row_count": data.get("row_count", ""),
        "priority": data.get("priority", "normal"),
        "priorities": PRIORITIES,
        "errors": errors,
        "then_steps": _padded([_shown_step(step) for step in data.get("then_steps") or []]),
    }


def _padded(steps: list[dict[str, str]]) -> list[dict[str, str]]:
    blank = {"processor": "", "columns": "", "options": "", "error": ""}
    return steps + [dict(blank) for _ in range(THEN_STEPS - len(steps))]


def _render_sheet(
    request: HttpRequest,
    sheet: Sheet,
    data: dict | None = None,
    errors: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    history = list(_sheet_jobs(sheet).order_by("-created_at", "-id")[:HISTORY])
    job = history[0] if history else None
    watching = request.session.pop(WATCHING, None) == sheet.pk  # just started here
    chain = chain_progress(job) if job is not None else None
    if chain is not None:
        job = chain.current  # the step running now (or next): the page follows it live
    finished_while_away = False
    if job is not None and job.is_terminal:
        finished_while_away = bool(notifications_mark_read(user=request.user, job=job))
    # ?job=N shows the results of an earlier job of this sheet (from its job history).
    asked = request.GET.get("job", "")
    shown = next((j for j in history if str(j.pk) == asked), None) or job
    pinned = shown is not None and shown != job
    context = {
        "sheet": sheet,
        "job": job,
        "chain": chain,
        "live_entities": _live_entities(sheet, chain),
        "history": history,
        "live_id": "current-job-live",
        "watching": watching,
        "finished_while_away": finished_while_away,
        "preview": preview_rows(sheet, limit=10),
        **_form_context(
            sheet, job, data or {"processor": request.GET.get("processor")}, errors or {}
        ),
        **(_results_context(request, sheet, shown, pinned) if shown is not None else {}),
    }
    return render(request, "sheets/sheet_detail.html", context, status=status)


def _current_job(sheet: Sheet) -> Job | None:
    """The job the sheet's page follows live: its latest, or the chain's current step."""
    latest = _sheet_jobs(sheet).order_by("-created_at", "-id").first()
    chain = chain_progress(latest) if latest is not None else None
    return chain.current if chain is not None else latest


def _live_entities(sheet: Sheet, chain) -> list[str]:
    """The entity keys the page follows: the sheet's, and its chain's steps' (the current
    step's last, so that its snapshot is the one the page shows after connecting)."""
    keys = [entity_key(sheet)]
    if chain is not None:
        keys += [step.entity_key for step in chain.steps]
        keys.append(chain.current.entity_key)
        keys = list(reversed(dict.fromkeys(reversed(keys))))  # unique, keeping last places
    return keys


@require_GET
@login_required
def sheet_detail(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _visible_sheet(request, sheet_id)
    if not sheet.is_ready:
        return _render_importing(request, sheet)
    sheet_seen(sheet=sheet, by=request.user)
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
    """GET asks for confirmation (what goes with the sheet: jobs, schedules); POST
    deletes, or refuses with a 409 while a job of the sheet is active."""
    sheet = _own_sheet(request, sheet_id)
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


def _import_job(sheet: Sheet) -> Job | None:
    jobs = Job.objects.filter(kind=IMPORT, owner_id=sheet.owner_id, entity_key=entity_key(sheet))
    return jobs.order_by("-pk").first()


def _render_importing(
    request: HttpRequest, sheet: Sheet, status: int = 200, error: str = ""
) -> HttpResponse:
    """A sheet whose upload is still being imported (or failed to): its import job, live,
    the jobs queued to run after it, and a form to queue one more."""
    waiting = Job.objects.filter(
        kind=KIND, owner_id=sheet.owner_id, params__sheet_id=sheet.pk, status__in=Job.ACTIVE
    )
    context = {
        "sheet": sheet,
        "job": _import_job(sheet),
        "waiting": waiting.order_by("pk"),
        "processors": all_processors(),
        "error": error,
    }
    return render(request, "sheets/sheet_importing.html", context, status=status)


def _start_after_import(request: HttpRequest, sheet: Sheet) -> HttpResponse:
    """The run form on an importing sheet: the job waits for the import job (`after`)
    and learns the sheet's rows when it starts; refused (409) once the import failed."""
    importing = _import_job(sheet)
    if sheet.status != "importing" or importing is None or not importing.is_active:
        error = "The import did not finish: upload the file again before running anything."
        return _render_importing(request, sheet, 409, error)
    data = _posted_data(request)
    if error := _priority_error(request, data["priority"]):
        return _render_importing(request, sheet, 400, error)
    try:
        processor = get_processor(data["processor"])
        job, created = sheet_job_submit(
            sheet=sheet,
            owner=sheet.owner,
            processor=processor.name,
            options=_posted_options(processor, request.POST),
            columns=data["columns"] or None,
            start_row=data["start_row"],
            row_count=data["row_count"],
            row_timeout=data["row_timeout"],
            priority=data["priority"],
            after=[importing.pk],
        )
    except (UnknownProcessor, SheetParamsError, ValueError) as exc:
        return _render_importing(request, sheet, 400, str(exc))
    except QuotaExceeded as exc:
        return _render_importing(request, sheet, 429, str(exc))
    except JobActionError as exc:  # the import ended meanwhile
        return _render_importing(request, sheet, 409, str(exc))
    done = "is already queued" if not created else "is queued"
    messages.success(
        request, f"“{job.title}” {done} (job #{job.pk}): it starts when the import is done."
    )
    return redirect(sheet)


@require_GET
@login_required
def options_form(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _visible_sheet(request, sheet_id)
    context = _form_context(sheet, None, {"processor": request.GET.get("processor", "")}, {})
    return render(request, "sheets/sheet_detail.html#options", {"sheet": sheet, **context})


@require_GET
@login_required
def options_notice(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """The options form's notice for the values typed so far (a base URL typed after
    "No LLM endpoint is configured" changes what is true).

    A GET's query ends up in access logs, so a secret option never comes in it: the page
    sends `has_opt_NAME=1` when a key is typed (conveyor.js), and a key put in the URL
    anyway is ignored."""
    _visible_sheet(request, sheet_id)
    try:
        processor = get_processor(request.GET.get("processor") or "clean")  # as the form
    except UnknownProcessor as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    options = _posted_options(processor, request.GET)
    for option in processor.options:
        if option.type == "secret":
            options.pop(option.name, None)
            if request.GET.get(f"has_opt_{option.name}"):
                options[option.name] = TYPED_SECRET
    notice = processor.notice(options)
    return render(request, "sheets/sheet_detail.html#notice", {"notice": notice})


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


def _priority_error(request: HttpRequest, value: str) -> str:
    """Why this user may not choose the form's priority ("" if they may): high, normal or
    low; integers for staff only, in the column's range (`selectors.priority_for`, as in
    the API and the CLI)."""
    try:
        parse_priority(value)
    except ValueError:
        return ""  # no priority at all: the service says so, with the form's other errors
    try:
        priority_for(request.user, value)
    except ValueError as exc:
        return f"Priority {exc}."
    return ""


def _posted_data(request: HttpRequest) -> dict[str, Any]:
    post = request.POST
    return {
        "processor": post.get("processor", ""),
        "columns": post.getlist("columns"),
        "start_row": post.get("start_row", ""),
        "row_count": post.get("row_count", ""),
        "row_timeout": post.get("row_timeout", ""),
        "priority": post.get("priority", "").strip().lower() or "normal",
        "then_steps": _posted_steps(post),
        # Secrets typed in the form: never shown again, the page asks for them instead.
        "typed_secrets": frozenset(n for n in _secret_names() if post.get(f"opt_{n}", "").strip()),
    }


def _submit_posted(
    request: HttpRequest, sheet: Sheet, data: dict[str, Any], **overrides: Any
) -> tuple[Job, bool] | HttpResponse:
    """Submit the start form's job (`overrides` replace submit arguments; without them,
    "then run …" steps make it a chain), or the page with the form's errors."""
    if error := _priority_error(request, data["priority"]):
        return _render_sheet(request, sheet, data, {"priority": error}, 400)
    if not overrides and any(step["processor"] for step in data["then_steps"]):
        return _start_chain(request, sheet, data)
    try:
        data["options"] = _posted_options(get_processor(data["processor"]), request.POST)
        arguments = {
            "sheet": sheet,
            "owner": sheet.owner,
            "processor": data["processor"],
            "options": data["options"],
            "columns": data["columns"] or None,
            "start_row": data["start_row"],
            "row_count": data["row_count"],
            "row_timeout": data["row_timeout"],
            "priority": data["priority"],
        }
        return sheet_job_submit(**{**arguments, **overrides})
    except UnknownProcessor as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 400)
    except SheetParamsError as exc:
        return _render_sheet(request, sheet, data, exc.errors, 400)
    except QuotaExceeded as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 429)
    except ValueError as exc:  # priority
        return _render_sheet(request, sheet, data, {"priority": str(exc)}, 400)


def _watch(request: HttpRequest, sheet: Sheet) -> HttpResponse:
    """The sheet's page after "Start and watch": the user stays with the job they just
    started, so its page does not greet them with the "Still running" of coming back."""
    request.session[WATCHING] = sheet.pk
    return redirect(sheet)


def _already_active(request: HttpRequest, sheet: Sheet, job: Job) -> HttpResponse:
    messages.info(request, f"This sheet already has an active job (#{job.pk}); here it is.")
    return redirect(sheet)


@require_POST
@login_required
def start(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = _sheet_to_run(request, sheet_id)
    if not sheet.is_ready:
        return _start_after_import(request, sheet)
    submitted = _submit_posted(request, sheet, _posted_data(request))
    if isinstance(submitted, HttpResponse):
        return submitted
    job, created = submitted
    if not created:
        return _already_active(request, sheet, job)
    if request.POST.get("mode") == "background":
        messages.success(
            request,
            f"“{job.title}” is running in the background (job #{job.pk}). "
            "You'll get a notification when it finishes.",
        )
        return redirect("sheets:list")
    return _watch(request, sheet)


def _posted_steps(post) -> list[dict[str, str]]:
    """The "then run …" steps as typed (for the chain, and to show them again)."""
    names, columns, options = (
        post.getlist(f"then_{f}") for f in ("processor", "columns", "options")
    )
    steps = []
    for index, name in enumerate(names[:THEN_STEPS]):
        steps.append(
            {
                "processor": name.strip(),
                "columns": (columns[index] if index < len(columns) else "").strip(),
                "options": options[index] if index < len(options) else "",
                "error": "",
            }
        )
    return steps


def _step_options(text: str) -> dict[str, str]:
    """NAME=VALUE lines (the processor checks the values); raises SheetParamsError."""
    options: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():  # the line is not repeated: it may be a pasted key
            raise SheetParamsError(
                {"options": f"Write options as NAME=VALUE, one a line (line {number} is not)."}
            )
        options[name.strip()] = value.strip()
    return options


def _start_chain(request: HttpRequest, sheet: Sheet, data: dict[str, Any]) -> HttpResponse:
    """The first step and its "then run …" steps as one submission (all or none)."""
    chosen = [step for step in data["then_steps"] if step["processor"]]
    common = {
        "start_row": data["start_row"],
        "row_count": data["row_count"],
        "row_timeout": request.POST.get("row_timeout", ""),
        "priority": data["priority"],
    }
    try:
        data["options"] = _posted_options(get_processor(data["processor"]), request.POST)
        steps = [
            {
                "processor": data["processor"],
                "options": data["options"],
                "columns": data["columns"] or None,
                **common,
            }
        ]
    except UnknownProcessor as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 400)
    for step in chosen:
        try:
            options = _step_options(step["options"])
        except SheetParamsError as exc:
            step["error"] = str(exc)
            return _render_sheet(request, sheet, data, {}, 400)
        steps.append(
            {
                "processor": step["processor"],
                "options": options,
                "columns": step["columns"] or None,
                **common,
            }
        )
    try:
        jobs = sheet_chain_submit(sheet=sheet, owner=sheet.owner, steps=steps)
    except SheetParamsError as exc:
        if not getattr(exc, "step", 0):
            return _render_sheet(request, sheet, data, exc.errors, 400)
        chosen[exc.step - 1]["error"] = "; ".join(exc.errors.values())
        return _render_sheet(request, sheet, data, {}, 400)
    except QuotaExceeded as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 429)
    except JobActionError as exc:
        return _render_sheet(request, sheet, data, {"processor": str(exc)}, 409)
    except ValueError as exc:  # priority
        return _render_sheet(request, sheet, data, {"priority": str(exc)}, 400)
    messages.success(
        request,
        f"A chain of {len(jobs)} steps is queued (jobs {', '.join(f'#{job.pk}' for job in jobs)}).",
    )
    return _watch(request, sheet)


# -- before spending money: the prompt, an estimate, a trial on a few rows --------------


@require_POST
@login_required
def trial(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """A real job on the first TRIAL_ROWS rows of the form's run: its answers and what
    they cost show on the sheet's page; the full run then reuses them."""
    sheet = _sheet_to_run(request, sheet_id)
    if not sheet.is_ready:
        return _render_importing(request, sheet, status=409)
    data = _posted_data(request)
    submitted = _submit_posted(request, sheet, data, row_count=TRIAL_ROWS, trial=True)
    if isinstance(submitted, HttpResponse):
        return submitted
    job, created = submitted
    if not created:
        return _already_active(request, sheet, job)
    messages.success(
        request,
        f"Trying the first {job.total} rows (job #{job.pk}): their answers and the tokens "
        "they used appear below. A run with the same options reuses them at no cost.",
    )
    return _watch(request, sheet)


def _field_label(processor, name: str) -> str:
    labels = {option.name: option.label for option in processor.options}
    return labels.get(name) or FIELD_LABELS.get(name) or name


@require_POST
@login_required
def llm_preview(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """The exact messages the form's `llm` job would send for one row (never the key),
    and the estimate of the whole run's tokens and cost; or the form's errors, 400."""
    sheet = _visible_sheet(request, sheet_id)
    template = "sheets/sheet_detail.html#llm_preview"
    llm = get_processor("llm")
    data = _posted_data(request)
    try:
        if data["processor"] != llm.name:
            raise SheetParamsError({"processor": "The prompt preview is for the LLM processor."})
        params = validate_params(
            {
                "sheet_id": sheet.pk,
                "processor": llm.name,
                "options": _posted_options(llm, request.POST),
                "columns": data["columns"] or None,
                "start_row": data["start_row"],
                "row_count": data["row_count"],
            },
            sheet.owner,
        )
        number = _preview_row(sheet, request.POST.get("preview_row", ""), params["start_row"])
    except SheetParamsError as exc:
        errors = [(_field_label(llm, name), message) for name, message in exc.errors.items()]
        return render(request, template, {"preview_errors": errors}, status=400)
    estimate = estimate_run(sheet, params, sheet.owner_id)
    context = {
        "preview_row": number,
        "preview_messages": prompt_for_row(sheet, params, number),
        "estimate": estimate,
        "estimate_last_row": estimate.first_row + estimate.rows - 1,
        "price": price_text(estimate.model),
        "chars_per_token": CHARS_PER_TOKEN,
        "default_completion_tokens": DEFAULT_COMPLETION_TOKENS,
        "trial_rows": TRIAL_ROWS,
    }
    return render(request, template, context)


def _preview_row(sheet: Sheet, raw: str, default: int) -> int:
    if not raw.strip():
        return default
    number = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else 0
    if not 1 <= number <= sheet.row_count:
        raise SheetParamsError(
            {"preview_row": f"Preview row must be between 1 and {sheet.row_count}."}
        )
    return number


# -- results, export, write-back -------------------------------------------------------


def _results_context(
    request: HttpRequest, sheet: Sheet, job: Job, pinned: bool = False
) -> dict[str, Any]:
    """The results table of `job`; `pinned`: a job the user asked for that is not the
    one the page follows live, so live refreshes keep it (conveyor.js reads the mark)."""
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
            "outputs": [_shown_output(result, c) for c in outputs],
        }
        for result in page.object_list
    ]
    return {
        "results_job": job,
        "results_pinned": pinned,
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


def _shown_output(result: RowResult, column: str) -> str:
    """A row's output as the table shows it: a reused row's `tokens` are the original
    answer's, which this job did not pay (its `spent` counts 0), so it says "reused"."""
    if column == TOKENS and result.reused:
        return REUSED_TOKENS
    return result.outputs.get(column, "")


@require_GET
@login_required
def results(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """The results table alone (filters, pages, live refreshes): of the asked job, else
    of the job the page follows; an asked job other than that one stays pinned."""
    sheet = _visible_sheet(request, sheet_id)
    current = _current_job(sheet)
    asked = request.GET.get("job", "")
    job = None
    if asked.isascii() and asked.isdigit():
        job = _sheet_jobs(sheet).filter(pk=int(asked)).first()
    job = job or current
    if job is None:
        return HttpResponse("", status=204)
    sheet_seen(sheet=sheet, by=request.user)  # a live refresh: the owner sees them come in
    context = {"sheet": sheet, **_results_context(request, sheet, job, job != current)}
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
