"""Reading what JSON API clients send: bodies, query parameters, dates and pages.

Everything here either returns clean Python values or raises `ApiError`, which the
API turns into a JSON error response (400 with per-field messages, 413 for big
bodies, 415 for forms, 429 with `Retry-After`). A body's types and limits are checked by
its pydantic model in `jobs.api.schemas` (`validated`, `parsed`), the one the OpenAPI
document shows, with the API's own words for each problem. Bodies are read as JSON whatever their Content-Type, so
`curl -d '{...}'` works. Text that a database would choke on (NUL characters, lone surrogates,
numbers beyond a column's range) is refused here, so bad input never becomes a 500.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from pydantic import BaseModel, ValidationError

MAX_TEXT = 200  # labels, keys and search text; the columns they meet are this wide
MAX_BIGINT = 2**63 - 1
QUOTA_RETRY_AFTER = 30  # seconds; see `too_many`
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"", "0", "false", "no", "off"}


class ApiError(Exception):
    """A request the API refuses, with the status and message the client gets."""

    def __init__(
        self,
        status: int,
        error: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.fields = fields or {}
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.fields:
            body["fields"] = self.fields
        response = JsonResponse(body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def too_many(exc: Exception) -> ApiError:
    """A 429 for a quota (too many active jobs): `Retry-After` is a hint, as a quota
    frees when jobs end, which no clock says."""
    return ApiError(429, str(exc), headers={"Retry-After": str(QUOTA_RETRY_AFTER)})


def bad(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}", {field: message})


# --- bodies -----------------------------------------------------------------


def check_declared_size(request: HttpRequest) -> None:
    """Refuse a body announced as too big before anything reads it."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.CONVEYOR_API_MAX_BODY_BYTES:
        raise _too_big()


def _too_big() -> ApiError:
    limit = settings.CONVEYOR_API_MAX_BODY_BYTES
    return ApiError(413, f"Request body too large (limit {limit} bytes).")


def json_object(request: HttpRequest, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` when the body is optional."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise _too_big() from None
    if len(raw) > settings.CONVEYOR_API_MAX_BODY_BYTES:
        raise _too_big()
    if not raw.strip() or request.content_type == "multipart/form-data":
        return _no_json(request, required)
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    _check_storable(data)
    return data


def _no_json(request: HttpRequest, required: bool) -> dict[str, Any]:
    """An empty body, or an empty form (what some clients send for a bare POST)."""
    if request.content_type == "multipart/form-data":
        try:
            fields = set(request.POST) - {"csrfmiddlewaretoken"}
            files = bool(request.FILES)
        except (MultiPartParserError, SuspiciousOperation):
            raise ApiError(400, "The request body could not be read.") from None
        if fields or files or required:
            raise ApiError(415, "Send JSON (Content-Type: application/json), not a form.")
    if required:
        raise ApiError(400, "Send a JSON object in the request body.")
    return {}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _check_storable(data: Any) -> None:
    """Refuse strings no database can store, without recursion (bodies may be deep)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            check_text("body", value)
        elif isinstance(value, int) and not -MAX_BIGINT <= value <= MAX_BIGINT:
            raise ApiError(400, "Request body holds an integer too large to store.")


def check_text(field: str, value: str) -> str:
    if "\x00" in value:
        raise bad(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(field, "must be valid Unicode text") from None
    return value


def only_fields(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(
            400,
            f"Unknown field(s): {', '.join(unknown)}; expected some of: {', '.join(sorted(allowed))}.",
            dict.fromkeys(unknown, "unknown field"),
        )


def validated(
    model: type[BaseModel], data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """`data` checked against a body model of `jobs.api.schemas` (types, lengths, ranges:
    what the OpenAPI document states, so the two cannot differ), strictly (no "3" for 3).

    Returns the values (the model's, or those of the fields that passed) and a message
    per bad field, so that a view can add its own checks and report all at once."""
    try:
        values = model.model_validate(data, strict=True).model_dump(by_alias=True)
        return values, {}
    except ValidationError as exc:
        said: dict[str, dict[tuple[int, ...], list[str]]] = {}
        for error in _relevant(exc.errors()):
            items = tuple(part for part in error["loc"][1:] if isinstance(part, int))
            at = said.setdefault(_where(error["loc"]), {}).setdefault(items, [])
            if (message := _say(error)) not in at:
                at.append(message)
        fields = {name: _joined(places) for name, places in said.items()}
        return {k: v for k, v in data.items() if k not in fields}, fields


def parsed(model: type[BaseModel], data: dict[str, Any], what: str) -> dict[str, Any]:
    """`validated`'s values, or a 400 naming every bad field ("Invalid `what`: ...")."""
    values, errors = validated(model, data)
    if errors:
        summary = "; ".join(f"{name}: {message}" for name, message in errors.items())
        raise ApiError(400, f"Invalid {what}: {summary}", errors)
    return values


def _relevant(errors: list[Any]) -> list[Any]:
    """Without a union's other branches when the value took one: `["nope"]` for a list
    of events or a string is about its item, not about not being a string."""
    into_items = {_where(e["loc"]) for e in errors if any(isinstance(p, int) for p in e["loc"])}
    return [
        error
        for error in errors
        if not (
            _where(error["loc"]) in into_items
            and error["type"].endswith("_type")
            and not any(isinstance(part, int) for part in error["loc"])
        )
    ]


def _where(loc: tuple[Any, ...]) -> str:
    """The field a pydantic error is about: its top-level name (`after` for `after[3]`)."""
    return str(loc[0]) if loc else "body"


def _joined(places: dict[tuple[int, ...], list[str]]) -> str:
    """One message for a field: `must be a string or an integer` (a union's branches),
    `item 2 must be at least 1` (an item of a list), `;` between places."""
    return "; ".join(
        ("item " + ".".join(map(str, items)) + " " if items else "")
        + said[0]
        + "".join(f" or {m.removeprefix('must be ')}" for m in said[1:])
        for items, said in places.items()
    )


MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_too_long": "must be at most {max_length} characters",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "list_type": "must be a list",
    "too_long": "must hold at most {max_length} items",
    "too_short": "must hold at least {min_length} item",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "extra_forbidden": "unknown field",
    "literal_error": "must be one of {expected}",
}


def _say(error: dict[str, Any]) -> str:
    """The API's words for a pydantic error (its own are about Python types)."""
    template = MESSAGES.get(error["type"])
    if template is None:
        return str(error["msg"])
    context = {
        name: int(value) if isinstance(value, float) and value.is_integer() else value
        for name, value in error.get("ctx", {}).items()
    }
    return template.format(**context)


# --- query parameters -------------------------------------------------------


def query(request: HttpRequest, allowed: set[str]) -> dict[str, str]:
    """The query string as a dict, refusing unknown names (typos fail loudly)."""
    unknown = sorted(set(request.GET) - allowed)
    if unknown:
        raise ApiError(
            400,
            f"Unknown query parameter(s): {', '.join(unknown)}; "
            f"expected some of: {', '.join(sorted(allowed)) or 'none'}.",
            dict.fromkeys(unknown, "unknown parameter"),
        )
    params = {name: ",".join(request.GET.getlist(name)) for name in request.GET}
    for name, value in params.items():
        check_text(name, value)
    return params


def query_flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise bad(name, "must be 1 or 0 (true or false)")


def query_int(params: dict[str, str], name: str, default: int) -> int:
    """A positive integer parameter."""
    text = params.get(name, "").strip()
    return positive_int(text, name) if text else default


def query_datetime(params: dict[str, str], name: str) -> datetime | None:
    """An ISO 8601 date or datetime; a date means its midnight, naive means local time."""
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = parse_datetime(text)
        if value is None and (day := parse_date(text)) is not None:
            value = _midnight(day)
        if value is None:
            raise ValueError
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad(
            name, "must be an ISO 8601 date or datetime, e.g. 2026-01-31 or 2026-01-31T12:00:00Z"
        ) from None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min)


def positive_int(text: str, name: str) -> int:
    """A page number, a page size or a database id from a URL; anything else is a 400."""
    try:
        value = int(text)
    except ValueError:
        raise bad(name, "must be a positive integer") from None
    if value < 1:
        raise bad(name, "must be a positive integer")
    return value


def found_or_404(queryset: QuerySet, raw_id: str, what: str) -> Any:
    """The row with this URL id among `queryset` (what the caller may see), else a 404:
    another user's object answers like a missing one."""
    pk = positive_int(raw_id, f"{what.lower()}_id")
    found = queryset.filter(pk=pk).first() if pk <= MAX_BIGINT else None  # else no row has it
    if found is None:
        raise ApiError(404, f"{what} {raw_id} not found.")
    return found


# --- pages ------------------------------------------------------------------


def paginate(params: dict[str, str], queryset: QuerySet) -> tuple[list[Any], dict[str, int]]:
    """One page of `queryset` and its numbers: page, pages, page_size, count."""
    size = min(
        query_int(params, "page_size", settings.CONVEYOR_API_PAGE_SIZE),
        settings.CONVEYOR_API_MAX_PAGE_SIZE,
    )
    page = query_int(params, "page", 1)
    count = queryset.count()
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise bad("page", f"must be between 1 and {pages}")
    rows = list(queryset[(page - 1) * size : page * size])
    return rows, {"count": count, "page": page, "pages": pages, "page_size": size}
