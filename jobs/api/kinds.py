"""The kinds part of the JSON API: operators' holds on whole kinds of work.

- `GET /api/kinds/`: every job kind, Tasks queue (`tasks.<queue>`) and processor, with
  its hold (`paused`, `paused_at`, `paused_by`, `reason`, `notice`) and caps (`cap` set
  at run time, `default_cap`); any signed-in user (it says why their jobs wait).
- `GET /api/kinds/<name>/`: one of them.
- `POST /api/kinds/<name>/pause/` `{"reason": "..."}`, `POST /api/kinds/<name>/resume/`,
  `PATCH /api/kinds/<name>/` `{"cap": 3}` (null: back to the default): staff only (403
  for anyone else); an unknown name is a 404, a bad cap or reason a 400.

Same conventions as `jobs.api.views`; changes go through `jobs.actions.kinds`.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from jobs.actions.kinds import kind_cap, kind_list, kind_pause, kind_resume, may_control
from jobs.api import schemas as s
from jobs.api.input import ApiError, json_object, only_fields, parsed, query
from jobs.api.openapi import operation
from jobs.api.schemas import fields_of
from jobs.api.views import _no_body, api_view
from jobs.engine.errors import ControlError
from jobs.serializers import iso

MAX_REASON = 500


def kind_as_dict(row: dict[str, Any]) -> dict[str, Any]:
    """One row of `kind_list()` as JSON (dates in ISO 8601, UTC)."""
    return {
        **row,
        "paused_at": iso(row["paused_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _row(name: str) -> dict[str, Any]:
    for row in kind_list():
        if row["name"] == name:
            return row
    raise ApiError(404, f"Kind {name} not found: not a job kind, Tasks queue or processor.")


def _staff(request: HttpRequest) -> None:
    if not may_control(request.user):
        raise ApiError(403, "Only staff may pause, resume or cap kinds of work.")


def _control_error(exc: ControlError) -> ApiError:
    field, _, message = str(exc).partition(": ")
    return ApiError(400, str(exc), {field: message})


@api_view("GET")
@operation("GET", "Every job kind, Tasks queue and processor with its hold and cap", s.KindList)
def kinds(request: HttpRequest) -> HttpResponse:
    query(request, set())
    return JsonResponse({"results": [kind_as_dict(row) for row in kind_list()]})


@api_view("GET", "PATCH")
@operation("GET", "One kind", s.Kind, errors=(404,))
@operation("PATCH", "Staff: set a kind's cap", s.Kind, body=s.KindCap, errors=(404,))
def kind(request: HttpRequest, name: str) -> HttpResponse:
    """GET: one kind; PATCH `{"cap": n}` (null: the default cap)."""
    row = _row(name)
    if request.method == "PATCH":
        _staff(request)
        data = json_object(request)
        only_fields(data, fields_of(s.KindCap))
        if "cap" not in data:
            raise ApiError(
                400, "cap: give a whole number, or null for the default", {"cap": "required"}
            )
        try:
            kind_cap(name, data["cap"], by=request.user)
        except ControlError as exc:
            raise _control_error(exc) from None
        row = _row(name)
    return JsonResponse(kind_as_dict(row))


@api_view("POST")
@operation(
    "POST", "Staff: pause a kind", s.Kind, body=s.KindPause, body_required=False, errors=(404,)
)
def kind_pause_view(request: HttpRequest, name: str) -> HttpResponse:
    _row(name)
    _staff(request)
    data = json_object(request, required=False)
    only_fields(data, fields_of(s.KindPause))
    reason = parsed(s.KindPause, data, "pause")["reason"]
    try:
        kind_pause(name, by=request.user, reason=reason or "")
    except ControlError as exc:
        raise _control_error(exc) from None
    return JsonResponse(kind_as_dict(_row(name)))


@api_view("POST")
@operation(
    "POST", "Staff: resume a kind", s.Kind, body=s.NoBody, body_required=False, errors=(404,)
)
def kind_resume_view(request: HttpRequest, name: str) -> HttpResponse:
    _row(name)
    _staff(request)
    _no_body(request)
    kind_resume(name, by=request.user)
    return JsonResponse(kind_as_dict(_row(name)))
