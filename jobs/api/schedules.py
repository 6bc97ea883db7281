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
    bad,
    bool_field,
    found_or_404,
    json_object,
    only_fields,
    paginate,
    query,
    text_field,
    too_many,
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

CREATE_FIELDS = EDITABLE | {"kind"}
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
    """Collects per-field errors so that every bad field is reported at once."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def check(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            self.fields.update(exc.fields)
            return None

    def raise_if_any(self) -> None:
        if self.fields:
            summary = "; ".join(f"{name}: {message}" for name, message in self.fields.items())
            raise ApiError(400, f"Invalid schedule: {summary}", self.fields)


def _create(request: HttpRequest) -> JsonResponse:
    data = json_object(request)
    only_fields(data, CREATE_FIELDS)
    errors = _Errors()
    kind = errors.check(_submittable_kind, data.get("kind"))
    values = errors.check(_values, data, kind, request.user) or {}
    errors.check(_timing, data, required=True)
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


def _values(data: dict[str, Any], kind: str | None, owner: Any) -> dict[str, Any]:
    """The checked fields besides kind and timing, those present in `data`."""
    errors = _Errors()
    values: dict[str, Any] = {}
    if "name" in data:
        values["name"] = errors.check(text_field, data, "name")
    if "priority" in data:
        values["priority"] = errors.check(_priority, data["priority"], owner)
    if "params" in data and kind:
        values["params"] = errors.check(_clean_params, kind, data["params"], owner)
    elif kind and "params" not in data:
        values["params"] = errors.check(_clean_params, kind, None, owner)
    if "overlap" in data:
        if data["overlap"] not in Schedule.Overlap.values:
            errors.fields["overlap"] = f"must be one of {', '.join(Schedule.Overlap.values)}"
        values["overlap"] = data["overlap"]
    if "enabled" in data:
        values["enabled"] = errors.check(bool_field, data, "enabled")
    for name in ("cron", "every", "timezone"):
        if name in data:
            values[name] = data[name]
    errors.raise_if_any()
    return values


def _timing(data: dict[str, Any], *, required: bool) -> None:
    """Types first, then the recurrence itself (5-field cron, known zone, interval)."""
    if "cron" in data and data["cron"] is not None and not isinstance(data["cron"], str):
        raise bad("cron", "must be a string of 5 fields, e.g. '0 7 * * *'")
    every = data.get("every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int | str)):
        raise bad("every", "must be a number of seconds or a duration like 30s, 10m, 1h")
    if "timezone" in data and not isinstance(data["timezone"], str):
        raise bad("timezone", "must be an IANA time zone name, e.g. Europe/Paris")
    if not required and not ({"cron", "every", "timezone"} & set(data)):
        return
    try:
        recurrence(
            cron=data.get("cron") or "",
            every=every,
            timezone=data.get("timezone", "UTC"),
        )
    except RecurrenceError as exc:
        raise bad(exc.field, exc.message) from None


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
    only_fields(data, EDITABLE)
    _check(request, found, "change")
    errors = _Errors()
    values = errors.check(_values, data, found.kind if "params" in data else None, found.owner)
    if "cron" in data or "every" in data:
        errors.check(_timing, data, required=True)
    elif "timezone" in data:
        errors.check(
            _timing, {**data, "cron": found.cron, "every": found.every_seconds}, required=True
        )
    errors.raise_if_any()
    values = {k: v for k, v in (values or {}).items() if k in data}
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
