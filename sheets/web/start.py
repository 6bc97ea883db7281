"""Starting work from a sheet's page: a run, a chain of "then run" steps, a trial on a few
rows, a run queued behind the sheet's import; and the LLM prompt preview with its
estimate, before any money is spent."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.models import Job
from jobs.public import (
    JobActionError,
    QuotaExceeded,
)
from sheets.models import Sheet
from sheets.processors import UnknownProcessor, get_processor
from sheets.rows.estimate import (
    CHARS_PER_TOKEN,
    DEFAULT_COMPLETION_TOKENS,
    estimate_run,
    format_sent,
    price_text,
    prompt_for_row,
)
from sheets.run import SheetParamsError
from sheets.selectors import import_job
from sheets.services import run_submit, sheet_chain_submit
from sheets.web.access import sheet_to_run, visible_sheet
from sheets.web.detail import WATCHING, render_importing, render_sheet
from sheets.web.forms import RunForm

TRIAL_ROWS = 5


FIELD_LABELS = {
    "processor": "Processor",
    "columns": "Input columns",
    "start_row": "Start row",
    "row_count": "Number of rows",
    "preview_row": "Preview row",
    "sheet_id": "Sheet",
}


def _start_after_import(request: HttpRequest, sheet: Sheet, form: RunForm) -> HttpResponse:
    """The run form on an importing sheet: the job waits for the import job (`after`)
    and learns the sheet's rows when it starts; refused (409) once the import failed."""
    importing = import_job(sheet)
    if sheet.status != "importing" or importing is None or not importing.is_active:
        error = "The import did not finish: upload the file again before running anything."
        return render_importing(request, sheet, 409, error)
    if form.priority_error:
        return render_importing(request, sheet, 400, form.priority_error)
    try:
        run = form.run(sheet).replace(after=[importing.pk])
        job, created = run_submit(run, owner=sheet.owner)
    except (UnknownProcessor, SheetParamsError, ValueError) as exc:
        return render_importing(request, sheet, 400, str(exc))
    except QuotaExceeded as exc:
        return render_importing(request, sheet, 429, str(exc))
    except JobActionError as exc:  # the import ended meanwhile
        return render_importing(request, sheet, 409, str(exc))
    done = "is already queued" if not created else "is queued"
    messages.success(
        request, f"“{job.title}” {done} (job #{job.pk}): it starts when the import is done."
    )
    return redirect(sheet)


def _submit_posted(
    request: HttpRequest, sheet: Sheet, form: RunForm, **overrides: Any
) -> tuple[Job, bool] | HttpResponse:
    """Submit the start form's job (`overrides` replace fields of its run; without them,
    "then run …" steps make it a chain), or the page with the form's errors."""
    data = form.shown
    if form.priority_error:
        return render_sheet(request, sheet, data, {"priority": form.priority_error}, 400)
    if not overrides and form.chosen_steps():
        return _start_chain(request, sheet, form)
    try:
        return run_submit(form.run(sheet).replace(**overrides), owner=sheet.owner)
    except UnknownProcessor as exc:
        return render_sheet(request, sheet, data, {"processor": str(exc)}, 400)
    except SheetParamsError as exc:
        return render_sheet(request, sheet, data, exc.errors, 400)
    except QuotaExceeded as exc:
        return render_sheet(request, sheet, data, {"processor": str(exc)}, 429)
    except ValueError as exc:  # priority
        return render_sheet(request, sheet, data, {"priority": str(exc)}, 400)


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
    sheet = sheet_to_run(request, sheet_id)
    form = RunForm(request.POST, user=request.user)
    if not sheet.is_ready:
        return _start_after_import(request, sheet, form)
    submitted = _submit_posted(request, sheet, form)
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


def _start_chain(request: HttpRequest, sheet: Sheet, form: RunForm) -> HttpResponse:
    """The first step and its "then run …" steps as one submission (all or none)."""
    data, chosen = form.shown, form.chosen_steps()
    try:
        steps = form.chain(sheet)
    except UnknownProcessor as exc:
        return render_sheet(request, sheet, data, {"processor": str(exc)}, 400)
    if steps is None:  # a step's options are not NAME=VALUE lines: the step says so
        return render_sheet(request, sheet, data, {}, 400)
    try:
        jobs = sheet_chain_submit(sheet=sheet, owner=sheet.owner, steps=steps)
    except SheetParamsError as exc:
        if not getattr(exc, "step", 0):
            return render_sheet(request, sheet, data, exc.errors, 400)
        chosen[exc.step - 1]["error"] = "; ".join(exc.errors.values())
        return render_sheet(request, sheet, data, {}, 400)
    except QuotaExceeded as exc:
        return render_sheet(request, sheet, data, {"processor": str(exc)}, 429)
    except JobActionError as exc:
        return render_sheet(request, sheet, data, {"processor": str(exc)}, 409)
    except ValueError as exc:  # priority
        return render_sheet(request, sheet, data, {"priority": str(exc)}, 400)
    messages.success(
        request,
        f"A chain of {len(jobs)} steps is queued (jobs {', '.join(f'#{job.pk}' for job in jobs)}).",
    )
    return _watch(request, sheet)


@require_POST
@login_required
def trial(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """A real job on the first TRIAL_ROWS rows of the form's run: its answers and what
    they cost show on the sheet's page; the full run then reuses them."""
    sheet = sheet_to_run(request, sheet_id)
    if not sheet.is_ready:
        return render_importing(request, sheet, status=409)
    form = RunForm(request.POST, user=request.user)
    submitted = _submit_posted(request, sheet, form, row_count=TRIAL_ROWS, trial=True)
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
    sheet = visible_sheet(request, sheet_id)
    template = "sheets/sheet_detail.html#llm_preview"
    llm = get_processor("llm")
    form = RunForm(request.POST, user=request.user)
    try:
        if form.shown["processor"] != llm.name:
            raise SheetParamsError({"processor": "The prompt preview is for the LLM processor."})
        params = form.run(sheet).replace(row_timeout=None, priority=None).check(sheet.owner)
        number = _preview_row(sheet, request.POST.get("preview_row", ""), params["start_row"])
    except SheetParamsError as exc:
        errors = [(_field_label(llm, name), message) for name, message in exc.errors.items()]
        return render(request, template, {"preview_errors": errors}, status=400)
    estimate = estimate_run(sheet, params, sheet.owner_id)
    context = {
        "preview_row": number,
        "preview_messages": prompt_for_row(sheet, params, number),
        "preview_format": format_sent(params),
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
