"""The schedules part of the JSON API: `/api/schedules/` (list, create),
`/api/schedules/<id>/` (read, PATCH, DELETE) and `POST /api/schedules/<id>/<action>/`
for each entry of `jobs.actions.schedules.SCHEDULES` (pause, resume, run-now, delete).

Same conventions as `jobs.api.views`: JSON errors, 400 with `fields` for bad input
(a bad cron expression, an unknown time zone, an interval too short: nothing is
created), unknown fields refused, another user's schedule a 404, an action that does
not apply (or is not the caller's to apply) a 409. Changes go through
`jobs.schedules.services`; `kind` and `params` are checked as for `POST /api/jobs/`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from jobs import selectors
from jobs.actions.schedules import SCHEDULES
from jobs.api import schemas as s
from jobs.api.input import (
    ApiError,
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
from jobs.api.views import (
    View,
    _clean_params,
    _no_body,
    _priority,
    _submittable_kind,
    api_view,
)
from jobs.engine.errors import JobActionError, QuotaExceeded, ScheduleError, UnknownKind
from jobs.models import Job, Schedule
from jobs.schedules.recurrence import RecurrenceError, recurrence
from jobs.schedules.services import EDITABLE, schedule_create, schedule_update
from jobs.serializers import job_as_dict, schedule_as_dict

TIMING = {"cron", "every", "timezone"}
RECENT_RUNS = 10


def visible_schedules(request: HttpRequest) -> QuerySet[Schedule]:
    return selectors.visible_schedules(request.user)


def visible_schedule(request: HttpRequest, schedule_id: str) -> Schedule:
    """The schedule if the caller may see it; anyone else's is 'not found'."""
    return found_or_404(visible_schedules(request), schedule_id, "Schedule")


@api_view("GET", "POST")
@operation("GET", "Your schedules", s.SchedulePage, query=s.OwnerPagesQuery)
@operation(
    "POST",
    "Create a schedule",
    s.Schedule,
    status=201,
    body=s.ScheduleCreate,
    errors=(409,),
    description="`cron` or `every` (seconds or `10m`) is required; `kind` and `params` as "
    "for a job. 409 beyond CONVEYOR_MAX_SCHEDULES_PER_USER.",
)
def schedules(request: HttpRequest) -> HttpResponse:
    """GET: the caller's schedules (staff: all; `?owner=name`), paginated. POST: create."""
    if request.method == "POST":
        return _create(request)
    params = query(request, fields_of(s.OwnerPagesQuery))
    rows = selectors.owned_by(visible_schedules(request), params.get("owner", "").strip())
    page, numbers = paginate(params, rows)
    return JsonResponse({"results": [schedule_as_dict(s) for s in page], **numbers})


class _Errors:
    """Collects per-field errors so that every bad field is reported at once: first the
    model's (`validated`: types, lengths, choices), then the view's own checks of the
    fields that passed it."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = dict(fields)

    def check(self, field: str, fn: Callable[..., Any], *args: Any) -> Any:
        if field in self.fields:
            return None
        try:
            return fn(*args)
        except ApiError as exc:
            self.fields.update(exc.fields)
            return None

    def raise_if_any(self) -> None:
        if self.fields:
            summary = "; ".join(f"{name}: {message}" for name, message in self.fields.items())
            raise ApiError(400, f"Invalid schedule: {summary}", self.fields)


def _create(request: HttpRequest) -> JsonResponse:
    data = json_object(request)
    only_fields(data, fields_of(s.ScheduleCreate))
    given, errors = _given(s.ScheduleCreate, data)
    kind = errors.check("kind", _submittable_kind, given.get("kind"))
    values = _values(errors, given, request.user)
    if kind:
        values["params"] = errors.check(
            "params", _clean_params, kind, given.get("params"), request.user
        )
    _timing(errors, given)
    errors.raise_if_any()
    try:
        found = schedule_create(owner=request.user, kind=kind, **values)
    except ScheduleError as exc:
        raise ApiError(400, f"Invalid schedule: {exc}", exc.fields) from None
    except JobActionError as exc:  # as many schedules as allowed
        raise ApiError(409, str(exc)) from None
    response = JsonResponse(schedule_as_dict(found), status=201)
    response["Location"] = reverse("api:schedule", args=[found.pk])
    return response


def _given(model: type[s.Body], data: dict[str, Any]) -> tuple[dict[str, Any], _Errors]:
    """The fields `data` holds (not the model's defaults: absent ones are left to the
    service, or unchanged by a PATCH) that passed the model, and its errors."""
    checked, problems = validated(model, data)
    return {name: value for name, value in checked.items() if name in data}, _Errors(problems)


def _values(errors: _Errors, given: dict[str, Any], owner: Any) -> dict[str, Any]:
    """The fields besides kind and params that `given` holds, checked (priority: what
    `owner` may choose)."""
    values = {name: given[name] for name in EDITABLE - {"params", "kind"} if name in given}
    if "name" in values:
        values["name"] = values["name"] or ""
    if "priority" in values:
        values["priority"] = errors.check("priority", _priority, values["priority"], owner)
    return values


def _timing(errors: _Errors, timing: dict[str, Any]) -> None:
    """The recurrence itself (5-field cron, known zone, interval long enough), once the
    model has passed its fields' types."""
    if TIMING & set(errors.fields):
        return
    try:
        recurrence(
            cron=timing.get("cron") or "",
            every=timing.get("every"),
            timezone=timing.get("timezone", "UTC"),
        )
    except RecurrenceError as exc:
        errors.fields[exc.field] = exc.message


@api_view("GET", "PATCH", "DELETE")
@operation("GET", "One schedule with its recent runs", s.ScheduleDetail)
@operation(
    "PATCH",
    "Change a schedule",
    s.ScheduleDetail,
    body=s.ScheduleFields,
    errors=(409,),
    description="Any field but `kind`; `cron` or `every` replaces the other; "
    '`"enabled": false` pauses it.',
)
@operation("DELETE", "Delete a schedule (its runs stay)", None, status=204, errors=(409,))
def schedule(request: HttpRequest, schedule_id: str) -> HttpResponse:
    """GET: a schedule with its recent runs. PATCH: change it. DELETE: remove it (its
    runs stay as jobs)."""
    query(request, set())
    found = visible_schedule(request, schedule_id)
    if request.method == "DELETE":
        return _act(request, found, "delete")
    if request.method == "PATCH":
        _update(request, found)
        found = visible_schedule(request, schedule_id)
    runs = selectors.visible_jobs(request.user).filter(schedule=found)[:RECENT_RUNS]
    return JsonResponse({**schedule_as_dict(found), "runs": [job_as_dict(job) for job in runs]})


def _update(request: HttpRequest, found: Schedule) -> None:
    data = json_object(request)
    only_fields(data, fields_of(s.ScheduleFields))
    _check(request, found, "change")
    given, errors = _given(s.ScheduleFields, data)
    values = _values(errors, given, found.owner)
    if "params" in given:
        values["params"] = errors.check(
            "params", _clean_params, found.kind, given["params"], found.owner
        )
    if "cron" in given or "every" in given:
        _timing(errors, given)
    elif "timezone" in given:
        _timing(errors, {**given, "cron": found.cron, "every": found.every_seconds})
    errors.raise_if_any()
    try:
        schedule_update(schedule=found, changes=values, by=request.user)
    except ScheduleError as exc:
        raise ApiError(400, f"Invalid schedule: {exc}", exc.fields) from None


def _check(request: HttpRequest, found: Schedule, permission: str) -> None:
    try:
        selectors.check_may_act_on_schedule(request.user, found, permission)
    except JobActionError as exc:
        raise ApiError(409, str(exc)) from None


def _act(request: HttpRequest, found: Schedule, name: str) -> HttpResponse:
    """Run an entry of `SCHEDULES`: 201 with the job it started (run-now), 204 when it
    deleted the schedule, else 200 with the schedule; 409 when it does not apply (a run
    still active with overlap `skip`) or is not the caller's, 429 over the job quota."""
    try:
        result = SCHEDULES.act(name, found, request.user)
    except QuotaExceeded as exc:
        raise too_many(exc) from None
    except (JobActionError, UnknownKind) as exc:
        raise ApiError(409, str(exc)) from None
    if result is None:
        return HttpResponse(status=204)
    if isinstance(result, Job):
        response = JsonResponse(job_as_dict(result, detail=True, viewer=request.user), status=201)
        response["Location"] = reverse("api:job", args=[result.pk])
        return response
    return JsonResponse(schedule_as_dict(visible_schedule(request, str(found.pk))))


def schedule_action_view(name: str) -> View:
    """`POST /api/schedules/<id>/<name>/` for an entry of `SCHEDULES`."""

    action = SCHEDULES[name]
    if name == "run-now":
        answer, status, also = s.JobDetail, 201, {}
    elif name == "delete":
        answer, status, also = None, 204, {}
    else:
        answer, status, also = s.Schedule, 200, {}

    @api_view("POST")
    @operation(
        "POST",
        action.label or name,
        answer,
        status=status,
        body=s.NoBody,
        body_required=False,
        errors=(409, 429),
        also=also,
        description=action.help,
    )
    def act(request: HttpRequest, schedule_id: str) -> HttpResponse:
        _no_body(request)
        return _act(request, visible_schedule(request, schedule_id), name)

    act.__name__ = act.__qualname__ = f"schedule_{name.replace('-', '_')}_view"
    return act
