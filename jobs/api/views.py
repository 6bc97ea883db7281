"""The JSON API under /api/: what scripts, the CLI and pages use to list, read, submit
and control jobs, find the job of a session or entity key, and read notifications.

Decisions (tests/jobs/api/test_views.py shows each one in use):
- Auth: the browser session (unsafe methods then need the CSRF token, as any page
  form) or `Authorization: Bearer <token>` (tokens from `manage.py conveyor_token`).
  No valid credentials, or an inactive user: 401.
- Scope: every job query goes through `Job.objects.visible_to(user)`; another user's
  job is a 404, never a 403. Staff see all jobs and may filter with `?owner=name`
  (for anyone else that filter can only narrow their own jobs). Notifications are
  always the caller's own.
- State changes go through the registry `jobs.actions.jobs.JOBS`: each entry is
  `POST /api/jobs/<id>/<name>/` (an entry's options are body fields: cancel takes
  {"force": true}, retry {"failed_rows": true}); an action that does not apply (cancel
  a finished job, delete an active one, someone else's job without the model
  permission) is a 409 with the service's message.
- Errors are JSON: {"error": "...", "fields": {...}}. Bad bodies, fields, query
  parameters, dates, ids and page numbers are 400; bodies over
  CONVEYOR_API_MAX_BODY_BYTES are 413; unknown URLs are a JSON 404; a wrong method
  is a 405 with `Allow`. Unknown body fields and query parameters are refused too.
- Dates are ISO 8601 in UTC. `created_after` is inclusive, `created_before`
  exclusive; a bare date means its midnight (server time zone).
- Every URL ends with a slash.
- Shapes are declared once, as pydantic models (`jobs.api.schemas`), named by each view's
  `@operation(...)`: the OpenAPI document (`/api/openapi.json`, `jobs.api.openapi`) is
  built from them, and bodies are checked with them (`input.validated`).
- Keys belong to their owner: `entity_key` and `session_key` must not start with a
  prefix a plug-in reserved for the keys it makes (`sheet:`, `write-back:`; a 400), and
  the by-session / by-entity lookups and unique-job dedup only match the caller's own
  jobs (staff: `?owner=name`), so a reserved key may be looked up, never forged. The
  same holds for prefix lookups (`by-entity/grading-assign7-*/`), the list's and the
  notifications' key filters (`entity_prefix=`, ...) and `q=` where it matches a key.
- Job JSON: `run_after` (not started before then) and `next_retry_at` (a retry-waiting
  job's next try) everywhere; `traceback` in one job's JSON (GET, submit, actions,
  by-key), for its owner and staff. `/api/jobs/running/` is the running state only;
  `/api/jobs/active/` adds queued, paused and retry-waiting jobs.
- `POST /api/jobs/` takes `"after": [ids]`: the job waits for those jobs (ones the
  caller can see; others are a 400) and runs once they all succeeded; the job JSON
  lists `depends_on` (all) and `waiting_for` (not yet succeeded).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cache, wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from pydantic import Field, create_model

from jobs import selectors
from jobs.actions.jobs import JOBS
from jobs.api import schemas as s
from jobs.api.auth import AuthError, authenticate
from jobs.api.input import (
    MAX_TEXT,
    ApiError,
    bad,
    check_declared_size,
    check_text,
    found_or_404,
    json_object,
    only_fields,
    paginate,
    parsed,
    query,
    query_datetime,
    query_flag,
    too_many,
    validated,
)
from jobs.api.openapi import operation
from jobs.api.schemas import fields_of
from jobs.engine.errors import InvalidChanges, JobActionError, QuotaExceeded, UnknownKind
from jobs.engine.keys import ReservedKey, check_user_key
from jobs.engine.kinds import get_kind, submittable_kinds
from jobs.engine.services import job_submit
from jobs.engine.services import notifications_mark_read as mark_read
from jobs.extensions import extension_for
from jobs.models import Job, Notification
from jobs.serializers import event_as_dict, job_as_dict, notification_as_dict

View = Callable[..., HttpResponse]

RECENT_EVENTS = 50  # events shown with one job, newest kept
# Keys as query parameters: a key exactly, or every key that starts with a prefix.
KEY_PARAMS = {
    "entity_key": ("entity_key", False),
    "entity_prefix": ("entity_key", True),
    "session_key": ("session_key", False),
    "session_prefix": ("session_key", True),
}
PAGE_PARAMS = fields_of(s.Pages)
SUBMIT_FIELDS = fields_of(s.JobSubmit)


def api_view(*methods: str) -> Callable[[View], View]:
    """Method check, size cap, authentication and CSRF; ApiError becomes JSON.

    Views are csrf_exempt for Django's middleware because token requests carry no
    CSRF token; `jobs.api.auth.authenticate` runs the same check for session requests.
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

        wrapper.api_methods = methods  # type: ignore[attr-defined]
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
    return selectors.visible_jobs(request.user)


def visible_job(request: HttpRequest, job_id: str) -> Job:
    """The job if the caller may see it; anyone else's is 'not found', like a bad id."""
    return found_or_404(visible_jobs(request), job_id, "Job")


def _filtered(jobs: QuerySet[Job], params: dict[str, str], user: Any) -> QuerySet[Job]:
    """The list's filters. Keys belong to their owner: key filters, and `q` where it
    matches a key, see the caller's own jobs (staff: those of `owner`)."""
    owner = params.get("owner", "").strip()
    statuses = [s.strip() for s in params.get("status", "").split(",") if s.strip()]
    text = params.get("q", "").strip()
    if len(text) > MAX_TEXT:
        raise bad("q", f"must be at most {MAX_TEXT} characters")
    try:
        selectors.search_terms(text)
    except ValueError as exc:
        raise bad("q", str(exc)) from None
    try:
        jobs = selectors.filter_jobs(
            jobs,
            statuses=statuses,
            kind=params.get("kind", "").strip(),
            text=text,
            created_after=query_datetime(params, "created_after"),
            created_before=query_datetime(params, "created_before"),
            keys_of=None if owner else user,
        )
    except ValueError as exc:
        raise bad("status", str(exc)) from None
    if keys := _key_filters(params):
        jobs = jobs if owner else jobs.filter(owner=user)
        for field, (key, prefix) in keys.items():
            jobs = selectors.with_key(jobs, field, key, prefix=prefix)
    return selectors.owned_by(jobs, owner)


def _key_filters(params: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """`entity_key` / `entity_prefix` / `session_key` / `session_prefix` as
    {field: (key, is_prefix)}; one of each pair."""
    keys: dict[str, tuple[str, bool]] = {}
    for name, (field, prefix) in KEY_PARAMS.items():
        value = params.get(name, "")
        if not value:
            continue
        if len(value) > MAX_TEXT:
            raise bad(name, f"must be at most {MAX_TEXT} characters")
        if field in keys:
            raise bad(name, f"give either {field} or {field.split('_')[0]}_prefix, not both")
        keys[field] = (value, prefix)
    return keys


# --- jobs -------------------------------------------------------------------


@api_view("GET", "POST")
@operation(
    "GET",
    "Your jobs, newest first, filtered and paginated",
    s.JobPage,
    query=s.JobListQuery,
    description="Staff see every user's jobs (`owner=` for one user's). `q` matches title, "
    "kind, entity and session keys, message, error, `#id`, and `path=value` terms on the "
    "job's params (`q=processor=llm options.model=gpt-4o-mini`; the paths each kind offers: "
    "sheet jobs `processor`, `sheet_id`, `options.model`, `options.mode`, `trial`; Django "
    "tasks `task`; another path is a 400 naming them). Key filters match your own jobs "
    "only (staff: add `owner=`).",
)
@operation(
    "POST",
    "Submit a job",
    s.Submitted,
    status=201,
    body=s.JobSubmit,
    errors=(409, 429),
    also={200: (s.Submitted, "An active job with the same key: that job, deduplicated.")},
    description="`kind` and its `params` (checked by the kind: a 400 says what is wrong in "
    "`fields.params`) → 201 with the job and a `Location` header, or 200 with "
    "`deduplicated: true` when an active job of yours holds the same key. 429 beyond your "
    "active-jobs ceiling. Keys starting with a prefix a plug-in reserved (`sheet:`, "
    "`write-back:`) are a 400. Sheet jobs: kind `sheets.process`, params `{sheet_id, "
    "processor, options, columns, start_row, row_count}`.",
)
def jobs(request: HttpRequest) -> HttpResponse:
    """GET: the caller's jobs, filtered and paginated. POST: submit a job."""
    if request.method == "POST":
        return _submit(request)
    params = query(request, fields_of(s.JobListQuery))
    rows, numbers = paginate(params, _filtered(visible_jobs(request), params, request.user))
    return JsonResponse({"results": [job_as_dict(job) for job in rows], **numbers})


def _submit(request: HttpRequest) -> JsonResponse:
    data = json_object(request)
    only_fields(data, SUBMIT_FIELDS)
    kind, values = _submission(data, request.user)
    try:
        job, created = job_submit(kind=kind, owner=request.user, **values)
    except QuotaExceeded as exc:
        raise too_many(exc) from None
    except JobActionError as exc:  # e.g. `after` names a job that failed
        raise bad("after", str(exc)) from None
    body = {**job_as_dict(job, detail=True, viewer=request.user), "deduplicated": not created}
    response = JsonResponse(body, status=201 if created else 200)
    response["Location"] = reverse("api:job", args=[job.pk])
    return response


def _submission(
    data: dict[str, Any], user: Any, model: type[s.Body] = s.JobSubmit
) -> tuple[str, dict[str, Any]]:
    """The checked arguments of `job_submit`: types and limits by the body's model (as
    the document states them), then what only the server knows (the kind, its params,
    reserved keys, jobs the caller can see); every bad field is reported at once."""
    given, errors = validated(model, data)

    def checked(field: str, check: Callable[..., Any], *args: Any) -> Any:
        if field in errors:
            return None
        try:
            return check(*args)
        except ApiError as exc:
            errors.update(exc.fields)
            return None

    kind = checked("kind", _submittable_kind, given.get("kind"))
    values = {
        "priority": checked("priority", _priority, given.get("priority"), user),
        "entity_key": checked("entity_key", _user_key, given.get("entity_key"), "entity_key"),
        "session_key": checked("session_key", _user_key, given.get("session_key"), "session_key"),
        "label": given.get("label") or "",
        "time_limit": given.get("time_limit"),
        "after": checked("after", _visible_jobs, given.get("after"), user, "after"),
        "after_any": checked("after_any", _visible_jobs, given.get("after_any"), user, "after_any"),
    }
    if kind:
        after = [*(values["after"] or []), *(values["after_any"] or [])]
        values["params"] = checked("params", _clean_params, kind, given.get("params"), user, after)
    if errors:
        summary = "; ".join(f"{name}: {message}" for name, message in errors.items())
        raise ApiError(400, f"Invalid job: {summary}", errors)
    return kind, values


def _user_key(key: str | None, field: str) -> str:
    """An entity or session key the caller chose: never one of a prefix a plug-in
    reserved (`sheet:`), so it cannot pass for a key the server made."""
    try:
        return check_user_key(key or "")
    except ReservedKey as exc:
        raise bad(field, str(exc)) from None


def _visible_jobs(ids: list[int] | None, user: Any, field: str) -> list[int]:
    """Ids of jobs to wait for (`after`: until they succeeded; `after_any`: until they
    ended, whatever the outcome): jobs the caller can see."""
    if missing := selectors.missing_jobs(user, ids or []):
        raise bad(field, f"no job {', '.join(f'#{i}' for i in missing)}")
    return ids or []


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
    """high / normal / low for everyone; any integer for staff (`selectors.priority_for`)."""
    try:
        return selectors.priority_for(user, value)
    except ValueError as exc:
        raise bad("priority", str(exc)) from None


def _clean_params(
    kind: str, params: Any, user: Any, after: list[int] | None = None
) -> dict[str, Any]:
    """The kind's own check (told what the job waits for); ValueError is its documented
    refusal, the rest are bad types."""
    if params is None:
        params = {}
    try:
        return get_kind(kind).clean_params(params, user, after)
    except ValidationError as exc:
        raise bad("params", "; ".join(exc.messages)) from None
    except (ValueError, TypeError) as exc:
        raise bad("params", str(exc)) from None


@api_view("GET", "DELETE")
@operation("GET", "One job with its params, result and recent events", s.JobWithEvents)
@operation("DELETE", "Delete a finished job", None, status=204, errors=(409,))
def job(request: HttpRequest, job_id: str) -> HttpResponse:
    """GET: one job with its parameters, result and recent events. DELETE: remove it."""
    query(request, set())
    found = visible_job(request, job_id)
    if request.method == "DELETE":
        _act(request, found, "delete")
        return HttpResponse(status=204)
    events = selectors.recent_events(found, RECENT_EVENTS)
    body = job_as_dict(found, detail=True, viewer=request.user)
    body["events"] = [event_as_dict(event) for event in events]
    return JsonResponse(body)


def _act(request: HttpRequest, job: Job, name: str, **given: Any) -> Any:
    """Run an entry of `JOBS`; one that does not apply (or is not the caller's to apply)
    is a 409 with the service's message, changes its kind refuses a 400."""
    try:
        return JOBS.act(name, job, request.user, **given)
    except (JobActionError, UnknownKind) as exc:
        raise ApiError(409, str(exc)) from None
    except InvalidChanges as exc:
        raise ApiError(400, "Invalid changes.", exc.fields) from None


def _no_body(request: HttpRequest) -> None:
    only_fields(json_object(request, required=False), set())


def chosen_action(
    request: HttpRequest, registry: Any, name: str, also: frozenset[str] = frozenset()
) -> str:
    """The entry a POST asks for: `name`, or another one an option of its body turns it
    into ({"force": true} makes cancel a force stop); any other body field is a 400,
    but those in `also` (the action reads them itself)."""
    names = {option.name for option in registry[name].options}
    data = json_object(request, required=False)
    only_fields(data, names | also)
    options = {field: value for field, value in data.items() if field in names}
    given = parsed(_options_model(registry, name), options, "options")
    return registry.chosen(name, {field: bool(given[field]) for field in names})


def job_action_view(name: str) -> View:
    """`POST /api/jobs/<id>/<name>/`: the job's JSON after the action (204 if deleted)."""

    action = JOBS[name]
    options = ", ".join(f"`{o.name}`: {o.help}" for o in action.options)
    notes = [action.help, f"Options: {options}." if options else ""]
    if name == "resume":
        notes.append("A kind may take changes too (a sheet job's budget).")

    @api_view("POST")
    @operation(
        "POST",
        action.label or name,
        s.JobDetail,
        body=s.ResumeOptions if name == "resume" else _options_model(JOBS, name),
        body_required=False,
        errors=(409,),
        also={204: (None, "The job was deleted.")} if name == "delete" else {},
        description=" ".join(note for note in notes if note),
    )
    def act(request: HttpRequest, job_id: str) -> HttpResponse:
        job = visible_job(request, job_id)
        changeable = _resume_fields(job) if name == "resume" else frozenset()
        chosen = chosen_action(request, JOBS, name, changeable)
        data = json_object(request, required=False)
        changes = {field: data[field] for field in changeable if field in data}
        if _act(request, job, chosen, **({"changes": changes} if changes else {})) is None:
            return HttpResponse(status=204)
        found = visible_job(request, job_id)
        return JsonResponse(job_as_dict(found, detail=True, viewer=request.user))

    act.__name__ = act.__qualname__ = f"job_{name.replace('-', '_')}_view"
    return act


@cache
def _options_model(registry: Any, name: str) -> type[s.Body]:
    """The body of an action: its options, each true or false (null: false); the one
    the document shows and `chosen_action` checks."""
    fields: dict[str, Any] = {
        o.name: (bool | None, Field(None, description=o.help)) for o in registry[name].options
    }
    return create_model(f"{name.title().replace('-', '')}Options", __base__=s.Body, **fields)


def _resume_fields(job: Job) -> frozenset[str]:
    """What a resume of this job may change (its kind says: a sheet job's budget)."""
    return frozenset(extension_for(job.kind).resume_fields)


@api_view("GET")
@operation(
    "GET",
    "Your running jobs",
    s.JobsInStates,
    query=s.InStatesQuery,
    description="The running state only (what the badge counts), newest first, at most "
    "CONVEYOR_API_MAX_PAGE_SIZE; `count` is all of them.",
)
def running(request: HttpRequest) -> HttpResponse:
    """Jobs in the running state only (what the navigation badge counts), newest first:
    queued, paused and retry-waiting jobs are not here (`/api/jobs/active/` has them);
    `statuses` says so in the answer."""
    return _in_states(request, [Job.Status.RUNNING])


@api_view("GET")
@operation(
    "GET",
    "Your jobs not yet ended",
    s.JobsInStates,
    query=s.InStatesQuery,
    description="Queued, running, paused and retry-waiting, newest first, at most "
    "CONVEYOR_API_MAX_PAGE_SIZE; `count` is all of them.",
)
def active(request: HttpRequest) -> HttpResponse:
    """Every job not yet ended: queued, running, paused and retry-waiting, newest first."""
    return _in_states(request, list(Job.ACTIVE))


def _in_states(request: HttpRequest, statuses: list[str]) -> JsonResponse:
    """At most CONVEYOR_API_MAX_PAGE_SIZE jobs in `statuses`; `count` is all of them."""
    params = query(request, fields_of(s.InStatesQuery))
    jobs = selectors.owned_by(
        visible_jobs(request).filter(status__in=statuses), params.get("owner", "")
    )
    if kind := params.get("kind", "").strip():
        jobs = jobs.filter(kind=kind)
    rows = list(jobs[: settings.CONVEYOR_API_MAX_PAGE_SIZE])
    return JsonResponse(
        {
            "results": [job_as_dict(j) for j in rows],
            "count": jobs.count(),
            "statuses": [str(status) for status in statuses],
        }
    )


@api_view("GET")
@operation(
    "GET",
    "Jobs that ended since a time",
    s.RecentCompletions,
    query=s.RecentQuery,
    description="Oldest first. Poll with `since` a few seconds before the previous answer's "
    "`now` and skip ids already seen; `more`: ask again from the last one's `finished_at`.",
)
def recent_completions(request: HttpRequest) -> HttpResponse:
    """Jobs that finished after `since` (default: an hour ago), oldest first.

    Poll with `since` a few seconds before the previous answer's `now` and skip ids
    already seen (`finished_at` is stamped just before the commit that makes a job
    visible here, so an exact `now` can miss one); at most CONVEYOR_API_MAX_PAGE_SIZE
    jobs come back, and `more` says to ask again from the last one's `finished_at`.
    """
    params = query(request, fields_of(s.RecentQuery))
    now = timezone.now()
    since = query_datetime(params, "since") or now - timedelta(hours=1)
    jobs = selectors.owned_by(visible_jobs(request), params.get("owner", "")).filter(
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


BY_KEY = (
    "An exact key answers one job (its active one, else its latest); a key ending in `*` "
    "answers a page of jobs (`JobPage`)."
)


@api_view("GET")
@operation(
    "GET",
    "Your job with this session key (a key ending in * : a page of them)",
    s.JobOrPage,
    query=s.ByKeyQuery,
    errors=(404,),
    description=BY_KEY,
)
def by_session(request: HttpRequest, key: str) -> HttpResponse:
    return _by_key(request, "session_key", key)


@api_view("GET")
@operation(
    "GET",
    "Your job with this entity key (a key ending in * : a page of them)",
    s.JobOrPage,
    query=s.ByKeyQuery,
    errors=(404,),
    description=BY_KEY,
)
def by_entity(request: HttpRequest, key: str) -> HttpResponse:
    return _by_key(request, "entity_key", key)


def _by_key(request: HttpRequest, field: str, key: str) -> JsonResponse:
    """The caller's active job with this key, else their most recent one; a key ending
    in `*` (`grading-assign7-*`) is a prefix: every job of the caller's whose key starts
    with it, newest first, paginated.

    Keys belong to a user: staff look up someone else's with `?owner=name`. A reserved
    key (`sheet:12`) may be looked up: only the caller's own jobs match it.
    """
    params = query(request, fields_of(s.ByKeyQuery))
    check_text("key", key)
    if len(key) > MAX_TEXT:
        raise bad("key", f"must be at most {MAX_TEXT} characters")
    narrow = {name: params.get(name, "").strip() for name in ("kind", "owner")}
    if key.endswith("*"):
        return _by_key_prefix(request, field, key[:-1], params, narrow)
    if paged := sorted(PAGE_PARAMS & set(params)):
        raise bad(paged[0], "pages are for prefix lookups (a key ending in *)")
    found = selectors.job_with_key(request.user, field, key, **narrow)
    if found is None:
        raise ApiError(404, f"No job with {field.replace('_', ' ')} {key!r}.")
    return JsonResponse(job_as_dict(found, detail=True, viewer=request.user))


def _by_key_prefix(
    request: HttpRequest, field: str, prefix: str, params: dict[str, str], narrow: dict[str, str]
) -> JsonResponse:
    if not prefix:
        raise bad("key", "give at least one character before the *")
    jobs = selectors.jobs_with_key_prefix(request.user, field, prefix, **narrow)
    rows, numbers = paginate(params, jobs)
    return JsonResponse({"results": [job_as_dict(job) for job in rows], **numbers})


# --- notifications ----------------------------------------------------------


@api_view("GET")
@operation(
    "GET",
    "Your notifications, newest first",
    s.NotificationPage,
    query=s.NotificationQuery,
    description="Key filters keep those about your jobs with such keys (a batch's counts for "
    "each of its jobs).",
)
def notifications(request: HttpRequest) -> HttpResponse:
    """The caller's notifications, newest first; `?unread=1` for unread ones only;
    `entity_key`, `entity_prefix`, `session_key`, `session_prefix` for those about the
    caller's jobs with such keys (a batch's counts for each of its jobs)."""
    params = query(request, fields_of(s.NotificationQuery))
    mine = Notification.objects.filter(user=request.user)
    shown = selectors.notifications_with_keys(request.user, _key_filters(params))
    shown = shown.filter(read_at__isnull=True) if query_flag(params, "unread") else shown
    rows, numbers = paginate(params, shown)
    return JsonResponse(
        {
            "results": [notification_as_dict(n) for n in rows],
            **numbers,
            "unread_count": mine.filter(read_at__isnull=True).count(),
        }
    )


@api_view("POST")
@operation(
    "POST",
    "Mark notifications read",
    s.Marked,
    body=s.MarkRead,
    description='`{"ids": [...]}` or `{"all": true}`; ids that are not yours are ignored.',
)
def notifications_mark_read(request: HttpRequest) -> HttpResponse:
    """Body {"ids": [1, 2]} or {"all": true}; ids that are not the caller's are ignored."""
    data = json_object(request)
    only_fields(data, fields_of(s.MarkRead))
    given = parsed(s.MarkRead, data, "request")
    if given["all"]:
        if "ids" in data:
            raise ApiError(400, 'Send either "ids" or "all", not both.')
    elif given["ids"] is None:
        raise ApiError(400, 'Send {"ids": [...]} or {"all": true}.', {"ids": "is required"})
    marked = mark_read(user=request.user, ids=None if given["all"] else given["ids"])
    left = Notification.objects.filter(user=request.user, read_at__isnull=True).count()
    return JsonResponse({"marked": marked, "unread_count": left})


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
