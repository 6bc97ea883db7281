"""The batches part of the JSON API: `/api/batches/` (list; create a batch of jobs in
one request), `/api/batches/<id>/` (read: its one progress and its jobs) and
`POST /api/batches/<id>/<action>/` (any entry of `jobs.actions.batches.BATCHES`: pause,
resume, cancel, retry, ... every job of the batch it applies to).

Same conventions as `jobs.api.views`: each job of `POST /api/batches/` is checked as a
`POST /api/jobs/` body (without `after`); every bad field of every job is reported at
once (`fields` keys like `jobs[1].params`) and then nothing is created: a batch is all
its jobs or none. Another user's batch is a 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from jobs import selectors
from jobs.actions.batches import BATCHES
from jobs.api import schemas as s
from jobs.api.input import (
    ApiError,
    bad,
    found_or_404,
    json_object,
    only_fields,
    paginate,
    query,
    too_many,
    validated,
)
from jobs.api.openapi import operation
from jobs.api.schemas import fields_of
from jobs.api.views import _no_body, _submission, api_view
from jobs.engine.errors import JobActionError, QuotaExceeded
from jobs.engine.services import Submission, batch_submit
from jobs.models import Batch, BatchCallback
from jobs.serializers import batch_as_dict, job_as_dict

MAX_BATCH_JOBS = 100
JOB_FIELDS = fields_of(s.BatchJobFields)


def visible_batch(request: HttpRequest, batch_id: str) -> Batch:
    """The batch if the caller may see it; anyone else's is 'not found'."""
    return found_or_404(selectors.visible_batches(request.user), batch_id, "Batch")


def _as_dict(batch: Batch) -> dict[str, Any]:
    progress = selectors.batch_progress(batch)
    return batch_as_dict(batch, progress.jobs, progress.percent)


@api_view("GET", "POST")
@operation("GET", "Your batches, newest first", s.BatchPage, query=s.OwnerPagesQuery)
@operation(
    "POST",
    "Submit a batch of jobs",
    s.BatchCreated,
    status=201,
    body=s.BatchSubmit,
    errors=(409, 429),
    description="All its jobs or none: every bad field of every job is reported at once.",
)
def batches(request: HttpRequest) -> HttpResponse:
    """GET: the caller's batches (staff: all; `?owner=name`), newest first. POST: submit
    {"label": "...", "jobs": [job, ...]}."""
    if request.method == "POST":
        return _create(request)
    params = query(request, fields_of(s.OwnerPagesQuery))
    rows: QuerySet[Batch] = selectors.visible_batches(request.user)
    if owner := params.get("owner", "").strip():
        rows = rows.filter(owner__username=owner)
    page, numbers = paginate(params, rows)
    return JsonResponse({"results": [_as_dict(batch) for batch in page], **numbers})


def _create(request: HttpRequest) -> JsonResponse:
    data = json_object(request)
    only_fields(data, fields_of(s.BatchSubmit))
    given, errors = validated(s.BatchSubmit, data)  # each job's errors: `_submissions`
    if "label" in errors:
        raise bad("label", errors["label"])
    label = given.get("label") or ""
    submissions = _submissions(data.get("jobs"), request.user)
    on_complete = _on_complete(data.get("on_complete"), request.user)
    try:
        batch, jobs = batch_submit(
            owner=request.user, submissions=submissions, label=label, on_complete=on_complete
        )
    except QuotaExceeded as exc:
        raise too_many(exc) from None
    except JobActionError as exc:  # a key an active job holds
        raise ApiError(409, str(exc)) from None
    body = {**_as_dict(batch), "job_details": [job_as_dict(job) for job in jobs]}
    response = JsonResponse(body, status=201)
    response["Location"] = reverse("api:batch", args=[batch.pk])
    return response


def _submissions(items: Any, user: Any) -> list[Submission]:
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_JOBS:
        raise bad("jobs", f"must be a list of 1 to {MAX_BATCH_JOBS} jobs")
    errors: dict[str, str] = {}
    submissions = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise bad("job", "must be an object with kind and params")
            only_fields(item, JOB_FIELDS)
            kind, values = _submission(item, user, s.BatchJobFields)
            values.pop("after", None)
            values.pop("after_any", None)
            submissions.append(Submission(kind=kind, owner=user, **values))
        except ApiError as exc:
            fields = exc.fields or {"job": exc.error}
            errors.update({f"jobs[{index}].{name}": message for name, message in fields.items()})
    if errors:
        summary = "; ".join(f"{name}: {message}" for name, message in errors.items())
        raise ApiError(400, f"Invalid batch, nothing submitted: {summary}", errors)
    return submissions


def _on_complete(item: Any, user: Any) -> Submission | None:
    """The job submitted when the batch ends, whatever the outcome (a job body without
    keys or dependencies); its params get the outcome under `batch_outcome`."""
    if item is None:
        return None
    if not isinstance(item, dict):
        raise bad("on_complete", "must be a job: an object with kind and params")
    try:
        only_fields(item, fields_of(s.BatchCallbackFields))
        kind, values = _submission(item, user, s.BatchCallbackFields)
    except ApiError as exc:
        fields = {f"on_complete.{name}": text for name, text in exc.fields.items()}
        errors = fields or {"on_complete": exc.error}
        raise ApiError(400, f"on_complete: {exc.error}", errors) from None
    keep = {name: values[name] for name in ("params", "priority", "label") if name in values}
    return Submission(kind=kind, owner=user, **keep)


def _on_complete_of(batch: Batch) -> dict[str, Any] | None:
    """The batch's `on_complete`: its kind, the job once submitted, or why it was not."""
    callback = BatchCallback.objects.filter(batch=batch).first()
    if callback is None:
        return None
    return {"kind": callback.spec.get("kind"), "job": callback.job_id, "error": callback.error}


@api_view("GET")
@operation("GET", "One batch", s.BatchDetail)
def batch(request: HttpRequest, batch_id: str) -> HttpResponse:
    """One batch; `on_complete` (kind, job id once submitted, error) when it has one."""
    query(request, set())
    found = visible_batch(request, batch_id)
    return JsonResponse({**_as_dict(found), "on_complete": _on_complete_of(found)})


@api_view("POST")
@operation(
    "POST",
    "An action on every job of the batch it applies to",
    s.BatchActed,
    description="`changed`: how many jobs it changed; `skipped`: why each other was not.",
    body=s.NoBody,
    body_required=False,
)
def batch_action(request: HttpRequest, batch_id: str, action: str) -> HttpResponse:
    """Any entry of `BATCHES` on the batch's jobs; 200 with how many changed."""
    _no_body(request)
    found = visible_batch(request, batch_id)
    if action not in BATCHES:
        raise ApiError(404, f"No batch action {action!r}; use {', '.join(BATCHES)}.")
    outcome = BATCHES.act(action, found, request.user)
    found.refresh_from_db()
    return JsonResponse({**_as_dict(found), "changed": outcome.changed, "skipped": outcome.skipped})
