"""The OpenAPI 3.1 document of the JSON API, built from the code: `/api/openapi.json`.

Each view declares what it takes and answers with `@operation(...)` (one per method,
under `@api_view`), naming models of `jobs.api.schemas`; the document walks
`jobs.api.urls` for the paths, so a URL without its operations shows up as missing
(tests/jobs/api/test_openapi.py checks every pattern) rather than silently absent.
Component schemas are pydantic's JSON Schema (2020-12, what OpenAPI 3.1 uses).

The document is built once per set of submittable kinds (the views and models do not
change while the process runs); the docs page (`/api/docs/`, Swagger UI vendored under static/) reads it.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from jobs.actions.batches import BATCHES
from jobs.api import schemas as s
from jobs.api.input import query
from jobs.engine.kinds import get_kind, submittable_kinds

API_VERSION = "1"
REF = "#/components/schemas/{model}"
Model = type[BaseModel]

ERRORS = {
    400: "Bad input: a body, field, query parameter, id or page; `fields` says which.",
    401: "No valid credentials (a session or `Authorization: Bearer <token>`).",
    403: "Not allowed: a session request without its CSRF token, or staff only.",
    404: "No such object among those you may see (another user's is a 404 too).",
    409: "The action does not apply to the object in its state.",
    413: "Request body too large (CONVEYOR_API_MAX_BODY_BYTES).",
    415: "A form was sent: send JSON.",
    429: "Too many: active jobs (CONVEYOR_MAX_ACTIVE_JOBS), or test deliveries a minute "
    "(CONVEYOR_WEBHOOK_TESTS_PER_MINUTE); retry after `Retry-After`.",
}


@dataclass(frozen=True)
class Operation:
    """One method of one URL: what it takes, what it answers, which errors it has."""

    method: str
    summary: str
    answer: Model | None  # None: 204 No Content
    status: int = 200
    body: Model | None = None
    body_required: bool = True
    query: Model = s.NoQuery
    errors: tuple[int, ...] = ()
    description: str = ""
    also: dict[int, tuple[Model | None, str]] = field(default_factory=dict)


def operation(method: str, summary: str, answer: Model | None, **options: Any) -> Callable:
    """Declare `method` of the decorated view (put it under `@api_view`)."""

    def declare(view: Callable) -> Callable:
        declared = dict(getattr(view, "api_operations", {}))
        declared[method] = Operation(method, summary, answer, **options)
        view.api_operations = declared  # type: ignore[attr-defined]
        return view

    return declare


# --- the document ----------------------------------------------------------------


def api_patterns() -> list[tuple[str, Any, str]]:
    """(OpenAPI path, view, URL name) of each pattern of `jobs.api.urls`, but the
    catch-all JSON 404."""
    prefix = reverse("api:kinds").removesuffix("kinds/")
    found = []
    _, resolver = get_resolver().namespace_dict["api"]
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver) or not isinstance(pattern, URLPattern):
            continue
        route = getattr(pattern.pattern, "_route", None)
        if route is None:  # the re_path catch-all
            continue
        path = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        found.append((path, pattern.callback, pattern.name or ""))
    return found


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every operation declared on `jobs.api.urls` (a copy:
    built once for each set of submittable kinds, the one thing that changes)."""
    return copy.deepcopy(_document(tuple(submittable_kinds())))


@functools.lru_cache(maxsize=8)
def _document(kinds: tuple[str, ...]) -> dict[str, Any]:
    operations = [
        (path, name, op)
        for path, view, name in api_patterns()
        for op in getattr(view, "api_operations", {}).values()
    ]
    models = {m for _, _, op in operations for m in _models_of(op)} | {s.Error}
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    _list_kinds(defs.get("$defs", {}), list(kinds))
    paths: dict[str, dict[str, Any]] = {}
    for path, name, op in operations:
        paths.setdefault(path, {})[op.method.lower()] = _operation(path, name, op)
    _link_created(paths)
    return {
        "openapi": "3.1.0",
        "info": _info(kinds),
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "responses": {str(code): _error_response(code) for code in ERRORS},
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": [{"bearerAuth": []}, {"sessionAuth": []}],
        "tags": [{"name": tag, "description": text} for tag, text in TAGS.items()],
    }


def _link_created(paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links from each 201 of a collection (`POST /api/jobs/`) to the operations
    on what it created (`/api/jobs/{job_id}/...`): the new `id` is their path parameter.
    Clients and the docs page read them; Schemathesis chains calls along them."""
    for path, methods in paths.items():
        created = methods.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links = {}
        for other, their in paths.items():
            found = re.match(re.escape(path) + r"{(\w+_id)}/", other)
            if found is None:
                continue
            for operation in their.values():
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {found.group(1): "$response.body#/id"},
                }
        if links:
            created["links"] = links


def _list_kinds(schemas: dict[str, Any], kinds: list[str]) -> None:
    """Fill the `enum` of each field marked as a submittable kind with this server's."""
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            if prop.pop("x-submittable-kind", False):
                prop["enum"] = kinds


def _models_of(op: Operation) -> list[Model]:
    found = [op.answer, op.body, *(model for model, _ in op.also.values())]
    return [model for model in found if model is not None]


def _operation(path: str, name: str, op: Operation) -> dict[str, Any]:
    method = op.method.lower()
    params = [*_path_params(path), *_query_params(op.query)]
    errors = {400, 401, 403, *op.errors}
    if "{" in path:
        errors.add(404)
    if op.body is not None:
        errors |= {413, 415}
    responses: dict[str, Any] = {str(op.status): _answer(op.answer, op.summary)}
    for code, (model, text) in op.also.items():
        responses[str(code)] = _answer(model, text)
    for code in sorted(errors):
        responses[str(code)] = {"$ref": f"#/components/responses/{code}"}
    body: dict[str, Any] = {}
    if op.body is not None:
        body["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    return {
        "operationId": f"{method}_{name.replace('-', '_')}",
        "summary": op.summary,
        **({"description": op.description} if op.description else {}),
        "tags": [path.split("/")[2]],
        **({"parameters": params} if params else {}),
        **body,
        "responses": dict(sorted(responses.items())),
    }


def _ref(model: Model) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _answer(model: Model | None, text: str) -> dict[str, Any]:
    if model is None:
        return {"description": text}
    return {"description": text, "content": {"application/json": {"schema": _ref(model)}}}


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, **PATH_PARAMS[_path_kind(name)]}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _path_kind(name: str) -> str:
    return "id" if name.endswith("_id") else name


def _query_params(model: Model) -> list[dict[str, Any]]:
    """One parameter per field; `X | None` is the parameter X, not given when absent."""
    properties = model.model_json_schema()["properties"] if model.model_fields else {}
    params = []
    for name, schema in sorted(properties.items()):
        schema = dict(schema)
        description = schema.pop("description", "")
        schema.pop("title", None)
        schema.pop("default", None)
        kinds = [one for one in schema.pop("anyOf", []) if one.get("type") != "null"]
        schema.update(kinds[0] if len(kinds) == 1 else {"anyOf": kinds} if kinds else {})
        params.append({"name": name, "in": "query", "description": description, "schema": schema})
    return params


def _error_response(code: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": ERRORS[code],
        "content": {"application/json": {"schema": _ref(s.Error)}},
    }
    if code == 401:
        answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if code == 429:
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}
        }
    return answer


def _info(names: tuple[str, ...]) -> dict[str, Any]:
    kinds = "\n".join(f"- `{name}`: {get_kind(name).label or name}" for name in names)
    return {
        "title": "Conveyor API",
        "version": API_VERSION,
        "description": DESCRIPTION + "\n\nSubmittable kinds on this server:\n\n" + kinds,
    }


def _batch_actions() -> list[str]:
    return list(BATCHES)


class _PathParams(dict):
    """The schema of a path parameter by its kind (`id`, `key`, `name`, `action`)."""

    def __missing__(self, kind: str) -> dict[str, Any]:
        if kind == "action":
            return {"schema": {"type": "string", "enum": _batch_actions()}}
        raise KeyError(kind)


PATH_PARAMS = _PathParams(
    id={"description": "The object's id.", "schema": {"type": "integer", "minimum": 1}},
    key={
        "description": "A key; ending in `*`, a prefix (every job whose key starts with it).",
        "schema": {"type": "string", "minLength": 1},
    },
    name={"description": "A job kind, Tasks queue or processor.", "schema": {"type": "string"}},
)

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `manage.py conveyor_token`: `Authorization: Bearer cvy_...`.",
    },
    "sessionAuth": {
        "type": "apiKey",
        "in": "cookie",
        "name": "sessionid",
        "description": "A logged-in browser session; POST, PATCH, PUT and DELETE then need "
        "the CSRF token in `X-CSRFToken` (403 without it), as page forms do.",
    },
}

TAGS = {
    "jobs": "Submit, list, read and control jobs; find the job of a session or entity key.",
    "notifications": "Your notifications of jobs and batches that ended.",
    "batches": "Many jobs submitted as one, with one progress.",
    "schedules": "Jobs submitted on a cron or an interval.",
    "kinds": "Operators' holds and caps on kinds of work.",
    "webhooks": "Signed HTTP deliveries of job events.",
    "notices": "E-mail notices of job events.",
    "openapi.json": "This document.",
}

DESCRIPTION = """\
The JSON API of Conveyor: what scripts, the CLI and the pages use.

**Version.** `/api/` is version 1 (`info.version`). Within it, changes are additive:
new endpoints, new optional body fields or query parameters, new fields in answers
(clients must ignore fields they do not know). Removing or renaming a field or an
endpoint, changing a type or a meaning, or making an optional input required would
be version 2, served at `/api/v2/` beside v1.

**Authentication.** `Authorization: Bearer <token>` (scripts), or a browser session
(then POST, PATCH, PUT and DELETE need the `X-CSRFToken` header). You only ever see
your own jobs, batches, schedules and notifications; another user's is a 404.

**Errors.** Always JSON: `{"error": "...", "fields": {"name": "problem"}}`. 400 bad
input (unknown body fields and query parameters too), 401 no credentials, 403 CSRF or
staff-only, 404 not found, 405 wrong method (with `Allow`), 409 action does not apply,
413 body too large, 415 a form instead of JSON, 429 too many active jobs (with
`Retry-After`).

**Pagination.** Lists take `page` (from 1) and `page_size`, and answer `count`,
`page`, `pages`, `page_size` with `results`. A page past the last is a 400.

**Dates** are ISO 8601 in UTC. Every URL ends with a slash.

**Job params.** `POST /api/jobs/` takes a `kind` and its `params` object; each kind
checks its own params and a 400 says what is wrong (`fields.params`). Per-kind
schemas are not in this document: the kinds validate params in code.
"""


# --- views -------------------------------------------------------------------------


@operation("GET", "This document (OpenAPI 3.1)", s.OpenApiDocument)
def openapi_json(request: HttpRequest) -> HttpResponse:
    """The document; for anyone signed in (the API's own authentication)."""
    query(request, set())
    return JsonResponse(document(), json_dumps_params={"indent": 1})


@login_required
def docs(request: HttpRequest) -> HttpResponse:
    """The docs page: Swagger UI on the document, served from static/ (CSP-clean)."""
    return render(request, "jobs/api_docs.html", {"schema_url": reverse("api:openapi")})
