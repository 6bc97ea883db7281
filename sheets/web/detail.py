"""A sheet's page: its preview, the start form (filled from the last job), its live job
and results; the page of a sheet still being imported; the options form's fragments.

A sheet's page subscribes to the sheet's entity key, so it finds its running job
after any navigation and follows whichever job is the sheet's latest.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from jobs.models import Job
from jobs.public import (
    notifications_mark_read,
)
from sheets.chains import chain_progress, sheet_jobs
from sheets.io.importing import preview_rows
from sheets.models import Sheet
from sheets.names import entity_key
from sheets.processors import UnknownProcessor, all_processors, get_processor
from sheets.selectors import (
    import_job,
    jobs_waiting_for_import,
    monthly_budget_of,
)
from sheets.services import (
    sheet_seen,
)
from sheets.web.access import visible_sheet
from sheets.web.forms import THEN_STEPS, OptionsForm, secret_names
from sheets.web.results import results_context

PRIORITIES = ["high", "normal", "low"]


HISTORY = 20  # jobs listed in a sheet's job history


WATCHING = "conveyor_watching_sheet"  # session: the sheet whose job the user just started


TYPED_SECRET = "(typed)"  # the options notice's stand-in for a key typed in the form


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


def _shown_step(step: dict[str, str]) -> dict[str, str]:
    """A "then run" step as the page shows it again: without its secret options' lines
    (`api_key=…`), which `retype` names so the user types them again."""
    secrets = secret_names()
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


def render_sheet(
    request: HttpRequest,
    sheet: Sheet,
    data: dict | None = None,
    errors: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    history = list(sheet_jobs(sheet).order_by("-created_at", "-id")[:HISTORY])
    job = history[0] if history else None
    # Just started here: the page load after the start's redirect takes the mark. An htmx
    # re-read (the old page sees the new job's first push before it navigates) only
    # reads it, or it would take the mark first and the page would greet "Still running".
    watched = request.session.get(WATCHING) if request.htmx else request.session.pop(WATCHING, None)
    watching = watched == sheet.pk
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
        "monthly_budget": monthly_budget_of(request.user),
        "watching": watching,
        "finished_while_away": finished_while_away,
        "preview": preview_rows(sheet, limit=10),
        **_form_context(
            sheet, job, data or {"processor": request.GET.get("processor")}, errors or {}
        ),
        **(results_context(request, sheet, shown, pinned) if shown is not None else {}),
    }
    return render(request, "sheets/sheet_detail.html", context, status=status)


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
    sheet = visible_sheet(request, sheet_id)
    if not sheet.is_ready:
        return render_importing(request, sheet)
    sheet_seen(sheet=sheet, by=request.user)
    return render_sheet(request, sheet)


def render_importing(
    request: HttpRequest, sheet: Sheet, status: int = 200, error: str = ""
) -> HttpResponse:
    """A sheet whose upload is still being imported (or failed to): its import job, live,
    the jobs queued to run after it, and a form to queue one more."""
    context = {
        "sheet": sheet,
        "job": import_job(sheet),
        "waiting": jobs_waiting_for_import(sheet),
        "processors": all_processors(),
        "error": error,
    }
    return render(request, "sheets/sheet_importing.html", context, status=status)


@require_GET
@login_required
def options_form(request: HttpRequest, sheet_id: int) -> HttpResponse:
    sheet = visible_sheet(request, sheet_id)
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
    visible_sheet(request, sheet_id)
    try:
        processor = get_processor(request.GET.get("processor") or "clean")  # as the form
    except UnknownProcessor as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    options = OptionsForm(processor, request.GET).options()
    for option in processor.options:
        if option.type == "secret":
            options.pop(option.name, None)
            if request.GET.get(f"has_opt_{option.name}"):
                options[option.name] = TYPED_SECRET
    notice = processor.notice(options)
    return render(request, "sheets/sheet_detail.html#notice", {"notice": notice})
