"""The JSON API under /api/: what scripts, the CLI and pages use to list, read, submit
and control jobs, find the job of a session or entity key, and read notifications.

Decisions (tests/jobs/test_api.py shows each one in use):
- Auth: the browser session (unsafe methods then need the CSRF token, as any page
  form) or `Authorization: Bearer <token>` (tokens from `manage.py conveyor_token`).
  No valid credentials, or an inactive user: 401.
- Scope: every job query goes through `Job.objects.visible_to(user)`; another user's
  job is a 404, never a 403. Staff see all jobs and may filter with `?owner=name`
  (for anyone else that filter can only narrow their own jobs). Notifications are
  always the caller's own.
- State changes go through `jobs.services`; an action that does not apply (cancel a
  finished job, delete an active one) is a 409 with the service's message.
- Errors are JSON: {"error": "...", "fields": {...}}. Bad bodies, fields, query
  parameters, dates, ids and page numbers are 400; bodies over
  CONVEYOR_API_MAX_BODY_BYTES are 413; unknown URLs are a JSON 404; a wrong method
  is a 405 with `Allow`. Unknown body fields and query parameters are refused too.
- Dates are ISO 8601 in UTC. `created_after` is inclusive, `created_before`
  exclusive; a bare date means its midnight (server time zone).
- Every URL ends with a slash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from jobs.api_input import (
    MAX_BIGINT,
    MAX_TEXT,
    ApiError,
    bad,
    bool_field,
    check_declared_size,
    check_text,
    json_object,
    only_fields,
    paginate,
    parse_id,
    positive_number,
    query,
    query_datetime,
    query_flag,
    text_field,
)
from jobs.auth import AuthError, authenticate
from jobs.kinds import UnknownKind, get_kind, submittable_kinds
from jobs.models import Job, Notification, Priority, parse_priority
from jobs.serializers import event_as_dict, job_as_dict, notification_as_dict
from jobs.services import (
    JobActionError,
    job_cancel,
    job_delete,
    job_pause,
    job_resume,
    job_retry,
    job_submit,
)
from jobs.services import notifications_mark_read as mark_read

View = Callable[..., HttpResponse]

RECENT_EVENTS = 50  # events shown with one job, newest kept
MAX_TIME_LIMIT = 366 * 24 * 3600.0
MAX_PRIORITY = 2**31 - 1  # the column's range
MAX_IDS = 1000
LIST_FILTERS = {"status", "kind", "q", "owner", "created_after", "created_before"}
PAGE_PARAMS = {"page", "page_size"}
SUBMIT_FIELDS = {
    "kind",
    "params",
    "priority",
    "entity_key",
    "session_key",
    "label",
    "time_limit",
}


def api_view(*methods: str) -> Callable[[View], View]:
    """Method check, size cap, authentication and CSRF; ApiError becomes JSON.

    Views are csrf_exempt for Django's middleware because token requests carry no
    CSRF token; `jobs.auth.authenticate` runs the same check for session requests.
    """

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return _not_allowed(request, methods)
            try:
                check_declared_size(request)
                request.user = authenticate(request)
                return view(request, *args, **kwargs)
            except AuthError as exc:
                return _auth_failed(exc)
            except ApiError as exc:
                return exc.response()

        return wrapper

    return decorate


def _not_allowed(request: HttpRequest, methods: tuple[str, ...]) -> JsonResponse:
    response = JsonResponse(
        {"error": f"Method {request.method} not allowed; use {', '.join(methods)}."}, status=405
    )
    response["Allow"] = ", ".join(methods)
    return response


def _auth_failed(exc: AuthError) -> JsonResponse:
    response = JsonResponse({"error": exc.message}, status=exc.status)
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="conveyor"'
    return response


# --- lookups ----------------------------------------------------------------


def visible_jobs(request: HttpRequest) -> QuerySet[Job]:
    return Job.objects.visible_to(request.user).select_related("owner")


def visible_job(request: HttpRequest, job_id: str) -> Job:
    """The job if the caller may see it; anyone else's is 'not found', like a bad id."""
    pk = parse_id(job_id, "job_id")
    job = visible_jobs(request).filter(pk=pk).first() if pk <= MAX_BIGINT else None
    if job is None:
        raise ApiError(404, f"Job {job_id} not found.")
    return job


def _owned_by(jobs: QuerySet[Job], username: str) -> QuerySet[Job]:
    if not username:
        return jobs
    return jobs.filter(**{f"owner__{get_user_model().USERNAME_FIELD}": username})


def _filtered(jobs: QuerySet[Job], params: dict[str, str]) -> QuerySet[Job]:
    statuses = [s.strip() for s in params.get("status", "").split(",") if s.strip()]
    unknown = sorted(set(statuses) - set(Job.Status.values))
    if unknown:
        raise bad("status", f"unknown status {', '.join(unknown)}; use {', '.join(Job.Status)}")
    if statuses:
        jobs = jobs.filter(status__in=statuses)
    if kind := params.get("kind", "").strip():
        jobs = jobs.filter(kind=kind)
    if text := params.get("q", "").strip():
        if len(text) > MAX_TEXT:
            raise bad("q", f"must be at most {MAX_TEXT} characters")
        jobs = jobs.filter(
            Q(label__icontains=text)
            | Q(entity_key__icontains=text)
            | Q(message__icontains=text)
            | Q(error__icontains=text)
        )
    if after := query_datetime(params, "created_after"):
        jobs = jobs.filter(created_at__gte=after)
    if before := query_datetime(params, "created_before"):
        jobs = jobs.filter(created_at__lt=before)
    return _owned_by(jobs, params.get("owner", "").strip())


# --- jobs -------------------------------------------------------------------


@api_view("GET", "POST")
def jobs(request: HttpRequest) -> HttpResponse:
    """GET: the caller's jobs, filtered and paginated. POST: submit a job."""
    if request.method == "POST":
        return _submit(request)
    params = query(request, LIST_FILTERS | PAGE_PARAMS)
    rows, numbers = paginate(params, _filtered(visible_jobs(request), params))
    return JsonResponse({"results": [job_as_dict(job) for job in rows], **numbers})


def _submit(request: HttpRequest) -> JsonResponse:
    data = json_object(request)
    only_fields(data, SUBMIT_FIELDS)
    kind, values = _submission(data, request.user)
    job = job_submit(kind=kind, owner=request.user, **values)
    deduplicated = bool(getattr(job, "deduplicated", False))
    body = {**job_as_dict(job, detail=True), "deduplicated": deduplicated}
    response = JsonResponse(body, status=200 if deduplicated else 201)
    response["Location"] = reverse("api:job", args=[job.pk])
    return response


def _submission(data: dict[str, Any], user: Any) -> tuple[str, dict[str, Any]]:
    """The checked arguments of `job_submit`; every bad field is reported at once."""
    errors: dict[str, str] = {}

    def checked(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except ApiError as exc:
            errors.update(exc.fields)
            return None

    kind = checked(_submittable_kind, data.get("kind"))
    values = {
        "priority": checked(_priority, data.get("priority"), user),
        "entity_key": checked(text_field, data, "entity_key"),
        "session_key": checked(text_field, data, "session_key"),
        "label": checked(text_field, data, "label"),
        "time_limit": checked(positive_number, data, "time_limit", maximum=MAX_TIME_LIMIT),
    }
    if kind:
        values["params"] = checked(_clean_params, kind, data.get("params"), user)
    if errors:
        summary = "; ".join(f"{name}: {message}" for name, message in errors.items())
        raise ApiError(400, f"Invalid job: {summary}", errors)
    return kind, values


def _submittable_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not kind:
        raise bad("kind", "is required: the name of a job kind")
    allowed = submittable_kinds()
    try:
        get_kind(kind)
    except UnknownKind:
        raise bad("kind", f"unknown kind; submittable: {', '.join(allowed) or 'none'}") from None
    if kind not in allowed:
        raise bad("kind", f"cannot be submitted here; submittable: {', '.join(allowed) or 'none'}")
    return kind


def _priority(value: Any, user: Any) -> int:
    """high / normal / low for everyone; any integer for staff (who may jump the queue)."""
    try:
        priority = parse_priority(value)
    except (ValueError, TypeError):
        raise bad("priority", "must be high, normal, low or an integer") from None
    if not user.is_staff and priority not in Priority.values:
        raise bad("priority", "must be high, normal or low (other values are for staff)")
    if abs(priority) > MAX_PRIORITY:
        raise bad("priority", f"must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    return priority


def _clean_params(kind: str, params: Any, user: Any) -> dict[str, Any]:
    """The kind's own check; ValueError is its documented refusal, the rest are bad types."""
    if params is None:
        params = {}
    try:
        return get_kind(kind).clean_params(params, user)
    except ValidationError as exc:
        raise bad("params", "; ".join(exc.messages)) from None
    except (ValueError, TypeError) as exc:
        raise bad("params", str(exc)) from None


@api_view("GET", "DELETE")
def job(request: HttpRequest, job_id: str) -> HttpResponse:
    """GET: one job with its parameters, result and recent events. DELETE: remove it."""
    query(request, set())
    found = visible_job(request, job_id)
    if request.method == "DELETE":
        _act(lambda: job_delete(job=found, by=request.user))
        return HttpResponse(status=204)
    events = list(found.events.order_by("-id")[:RECENT_EVENTS])[::-1]
    body = job_as_dict(found, detail=True)
    body["events"] = [event_as_dict(event) for event in events]
    return JsonResponse(body)


def _act(action: Callable[[], Any]) -> None:
    try:
        action()
    except JobActionError as exc:
        raise ApiError(409, str(exc)) from None
    except UnknownKind as exc:
        raise ApiError(409, str(exc)) from None


def _action_response(
    request: HttpRequest, job_id: str, action: Callable[[Job], Any]
) -> JsonResponse:
    found = visible_job(request, job_id)
    _act(lambda: action(found))
    return JsonResponse(job_as_dict(visible_job(request, job_id), detail=True))


def _no_body(request: HttpRequest) -> None:
    only_fields(json_object(request, required=False), set())


@api_view("POST")
def job_cancel_view(request: HttpRequest, job_id: str) -> HttpResponse:
    _no_body(request)
    return _action_response(request, job_id, lambda j: job_cancel(job=j, by=request.user))


@api_view("POST")
def job_pause_view(request: HttpRequest, job_id: str) -> HttpResponse:
    _no_body(request)
    return _action_response(request, job_id, lambda j: job_pause(job=j, by=request.user))


@api_view("POST")
def job_resume_view(request: HttpRequest, job_id: str) -> HttpResponse:
    _no_body(request)
    return _action_response(request, job_id, lambda j: job_resume(job=j, by=request.user))


@api_view("POST")
def job_retry_view(request: HttpRequest, job_id: str) -> HttpResponse:
    """Body {"failed_rows": true} redoes only the failed rows (kinds that support it)."""
    data = json_object(request, required=False)
    only_fields(data, {"failed_rows"})
    failed_rows = bool_field(data, "failed_rows")
    return _action_response(
        request, job_id, lambda j: job_retry(job=j, by=request.user, failed_rows=failed_rows)
    )


@api_view("GET")
def running(request: HttpRequest) -> HttpResponse:
    """Jobs in the running state (what the navigation badge counts), newest first."""
    params = query(request, {"kind", "owner"})
    jobs = _owned_by(
        visible_jobs(request).filter(status=Job.Status.RUNNING), params.get("owner", "")
    )
    if kind := params.get("kind", "").strip():
        jobs = jobs.filter(kind=kind)
    rows = list(jobs[: settings.CONVEYOR_API_MAX_PAGE_SIZE])
    return JsonResponse({"results": [job_as_dict(j) for j in rows], "count": jobs.count()})


@api_view("GET")
def recent_completions(request: HttpRequest) -> HttpResponse:
    """Jobs that finished after `since` (default: an hour ago), oldest first.

    Poll with `since` a few seconds before the previous answer's `now` and skip ids
    already seen (`finished_at` is stamped just before the commit that makes a job
    visible here, so an exact `now` can miss one); at most CONVEYOR_API_MAX_PAGE_SIZE
    jobs come back, and `more` says to ask again from the last one's `finished_at`.
    """
    params = query(request, {"since", "owner"})
    now = timezone.now()
    since = query_datetime(params, "since") or now - timedelta(hours=1)
    jobs = _owned_by(visible_jobs(request), params.get("owner", "")).filter(
        status__in=Job.TERMINAL, finished_at__gt=since
    )
    limit = settings.CONVEYOR_API_MAX_PAGE_SIZE
    rows = list(jobs.order_by("finished_at", "id")[: limit + 1])
    return JsonResponse(
        {
            "results": [job_as_dict(j) for j in rows[:limit]],
            "since": since.isoformat(),
            "now": now.isoformat(),
            "more": len(rows) > limit,
        }
    )


@api_view("GET")
def by_session(request: HttpRequest, key: str) -> HttpResponse:
    return _by_key(request, "session_key", key)


@api_view("GET")
def by_entity(request: HttpRequest, key: str) -> HttpResponse:
    return _by_key(request, "entity_key", key)


def _by_key(request: HttpRequest, field: str, key: str) -> JsonResponse:
    """The caller's active job with this key, else their most recent one.

    Keys belong to a user: staff look up someone else's with `?owner=name`.
    """
    params = query(request, {"kind", "owner"})
    check_text("key", key)
    if len(key) > MAX_TEXT:
        raise bad("key", f"must be at most {MAX_TEXT} characters")
    owner = params.get("owner", "").strip()
    jobs = visible_jobs(request).filter(**{field: key})
    jobs = _owned_by(jobs, owner) if owner else jobs.filter(owner=request.user)
    if kind := params.get("kind", "").strip():
        jobs = jobs.filter(kind=kind)
    found = jobs.active().first() or jobs.first()
    if found is None:
        raise ApiError(404, f"No job with {field.replace('_', ' ')} {key!r}.")
    return JsonResponse(job_as_dict(found, detail=True))


# --- notifications ----------------------------------------------------------


@api_view("GET")
def notifications(request: HttpRequest) -> HttpResponse:
    """The caller's notifications, newest first; `?unread=1` for unread ones only."""
    params = query(request, {"unread"} | PAGE_PARAMS)
    mine = Notification.objects.filter(user=request.user)
    shown = mine.filter(read_at__isnull=True) if query_flag(params, "unread") else mine
    rows, numbers = paginate(params, shown)
    return JsonResponse(
        {
            "results": [notification_as_dict(n) for n in rows],
            **numbers,
            "unread_count": mine.filter(read_at__isnull=True).count(),
        }
    )


@api_view("POST")
def notifications_mark_read(request: HttpRequest) -> HttpResponse:
    """Body {"ids": [1, 2]} or {"all": true}; ids that are not the caller's are ignored."""
    data = json_object(request)
    only_fields(data, {"ids", "all"})
    if bool_field(data, "all"):
        if "ids" in data:
            raise ApiError(400, 'Send either "ids" or "all", not both.')
        ids = None
    else:
        ids = _notification_ids(data)
    marked = mark_read(user=request.user, ids=ids)
    left = Notification.objects.filter(user=request.user, read_at__isnull=True).count()
    return JsonResponse({"marked": marked, "unread_count": left})


def _notification_ids(data: dict[str, Any]) -> list[int]:
    ids = data.get("ids")
    if ids is None:
        raise ApiError(400, 'Send {"ids": [...]} or {"all": true}.', {"ids": "is required"})
    if not isinstance(ids, list) or len(ids) > MAX_IDS:
        raise bad("ids", f"must be a list of at most {MAX_IDS} notification ids")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
        raise bad("ids", "must hold positive integers only")
    return ids


# --- anything else ----------------------------------------------------------


@csrf_exempt  # a POST to a wrong URL gets this JSON 404, not a CSRF page
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """A JSON 404 for unknown API URLs, pointing at the slash-ended URL if that exists."""
    error = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            error += f" Did you mean {request.path}/ ?"
    return JsonResponse({"error": error}, status=404)
