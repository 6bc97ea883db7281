"""The shapes of the JSON API, declared once: request bodies, query parameters and
answers as pydantic models. `jobs.api.openapi` builds the OpenAPI document from them
(`model_json_schema()`, JSON Schema 2020-12 as OpenAPI 3.1 wants), and the views take
their field lists from them (`fields_of`): a field added here is accepted and
documented at once.

Rules that keep the document honest (Schemathesis checks both ways, see
tests/jobs/api/test_openapi_fuzz.py):
- A request shape is never stricter than the view: what the view accepts must be valid
  here (so a type the view coerces, like a priority "0", is declared loosely with words).
- Bodies refuse unknown fields (`extra="forbid"`, as `only_fields` does); answers allow
  more (a client must ignore fields it does not know: adding one is not a new version).
- Answers are exact about types and nullability: the fuzzer validates every answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from jobs import models
from jobs.api.input import MAX_BIGINT, MAX_TEXT
from jobs.notice_models import EVENTS
from jobs.notices.services import MAX_URL

# The models' own choices, so that a new status or level shows in the document at once.
JobStatus = Literal[tuple(models.Job.Status.values)]  # type: ignore[valid-type]
Overlap = Literal[tuple(models.Schedule.Overlap.values)]  # type: ignore[valid-type]
Level = Literal[tuple(models.Notification.Level.values)]  # type: ignore[valid-type]
NoticeEvent = Literal[EVENTS]  # type: ignore[valid-type]
Priority = str | int
DateTime = str  # ISO 8601, UTC
PositiveId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
MAX_TIME_LIMIT = 366 * 24 * 3600.0  # a year
MAX_AFTER = 50
# `jobs.api.openapi` lists the server's submittable kinds as this field's `enum`.
SUBMITTABLE = {"x-submittable-kind": True}


def fields_of(model: type[BaseModel]) -> set[str]:
    """The JSON names a body or query model declares: what a view accepts."""
    return {field.alias or name for name, field in model.model_fields.items()}


class Body(BaseModel):
    """A request body: unknown fields are a 400."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query parameters: unknown ones are a 400. Each field is one parameter."""

    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    """An answer: clients ignore fields they do not know."""

    model_config = ConfigDict(extra="allow")


# --- errors ---------------------------------------------------------------------


class Error(Answer):
    """Every error answer under /api/: a message for people, and per-field messages
    for a 400 about fields (`jobs[1].params`, `on_complete.kind` for nested ones)."""

    error: str = Field(description="What went wrong, in a sentence.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Field (or query parameter) name → its problem."
    )


# --- query parameters ------------------------------------------------------------

_TEXT = {"max_length": MAX_TEXT}


class Pages(Query):
    page: int | None = Field(None, ge=1, description="Page number, from 1.")
    page_size: int | None = Field(
        None, ge=1, description="Rows a page (default and cap: the server's settings)."
    )


class OwnerFilter(Query):
    owner: str | None = Field(
        None, description="Staff: a username, for that user's rows; others: narrows to own."
    )


class KeyFilters(Query):
    entity_key: str | None = Field(None, description="Exactly this entity key.", **_TEXT)
    entity_prefix: str | None = Field(None, description="Entity keys starting with it.", **_TEXT)
    session_key: str | None = Field(None, description="Exactly this session key.", **_TEXT)
    session_prefix: str | None = Field(None, description="Session keys starting with it.", **_TEXT)


class JobListQuery(Pages, OwnerFilter, KeyFilters):
    status: str | None = Field(None, description="Comma-separated statuses, e.g. `queued,running`.")
    kind: str | None = Field(None, description="A job kind.")
    q: str | None = Field(None, description="Search text: label, title, keys.", **_TEXT)
    created_after: str | None = Field(
        None, description="ISO 8601 date or datetime, inclusive (a date: its midnight)."
    )
    created_before: str | None = Field(None, description="ISO 8601 date or datetime, exclusive.")


class InStatesQuery(OwnerFilter):
    kind: str | None = Field(None, description="A job kind.")


class RecentQuery(OwnerFilter):
    since: str | None = Field(
        None, description="ISO 8601; default an hour ago. Poll with the last answer's `now`."
    )


class ByKeyQuery(Pages, OwnerFilter):
    kind: str | None = Field(None, description="A job kind.")


class NotificationQuery(Pages, KeyFilters):
    unread: str | None = Field(None, description="`1` (or true): unread ones only.")


class OwnerPagesQuery(Pages, OwnerFilter):
    pass


class DeliveriesQuery(Query):
    limit: int | None = Field(None, ge=1, description="At most this many (default 50).")


class NoQuery(Query):
    pass


# --- request bodies ----------------------------------------------------------------


class JobFields(Body):
    kind: str = Field(description="A submittable job kind.", json_schema_extra=SUBMITTABLE)
    params: dict[str, Any] | None = Field(
        None, description="The kind's parameters; the kind checks them (a 400 says why)."
    )
    priority: Priority | None = Field(
        None, description="`high`, `normal` (default) or `low`; staff: any integer."
    )
    label: str | None = Field(None, description="Your name for the job.", **_TEXT)


class BatchCallbackFields(JobFields):
    """The job submitted when a batch ends; its params get `batch_outcome`."""


class BatchJobFields(JobFields):
    entity_key: str | None = Field(
        None, description="Your key for what the job is about (not `sheet:`...).", **_TEXT
    )
    session_key: str | None = Field(None, description="Your key for a session.", **_TEXT)
    time_limit: float | None = Field(
        None,
        gt=0,
        le=MAX_TIME_LIMIT,
        allow_inf_nan=False,
        description="Seconds the job may run (more than 0, at most a year).",
    )


class JobSubmit(BatchJobFields):
    after: list[PositiveId] | None = Field(
        None,
        max_length=MAX_AFTER,
        description="Run once these jobs (ids) have all succeeded; cancelled if one fails.",
    )
    after_any: list[PositiveId] | None = Field(
        None,
        max_length=MAX_AFTER,
        description="Run once these jobs have ended, whatever the outcome (a clean-up).",
    )


class BatchSubmit(Body):
    label: str | None = Field(None, **_TEXT)
    jobs: list[BatchJobFields] = Field(
        min_length=1, max_length=100, description="Each as a `POST /api/jobs/` body."
    )
    on_complete: BatchCallbackFields | None = None


class ResumeOptions(BaseModel):
    """A resume's changes: fields the job's kind lets a resume change (a sheet job's
    `budget_tokens`, `budget_usd`); any other field is a 400."""

    model_config = ConfigDict(extra="allow")


class MarkRead(Body):
    ids: list[PositiveId] | None = Field(
        None, max_length=1000, description="Ids of your notifications (others' are ignored)."
    )
    all: bool | None = Field(None, description="`true`: every notification of yours.")


class ScheduleFields(Body):
    """A schedule's fields; absent ones keep their value (PATCH) or default (create).
    What a type cannot say (a valid cron, a known zone, a long enough interval, the
    kind's params) the view checks after the model."""

    name: str | None = Field(None, **_TEXT)
    params: dict[str, Any] | None = Field(
        None, description="The kind's parameters, as for a job; the kind checks them."
    )
    priority: Priority | None = Field(
        None, description="`high`, `normal` (default) or `low`; staff: any integer."
    )
    cron: str | None = Field(None, description="5-field cron, e.g. `0 7 * * *`.")
    every: int | str | None = Field(
        None, description="Seconds, or a duration like `30s`, `10m`, `1h`."
    )
    timezone: str = Field("UTC", description="IANA name for `cron`, e.g. Europe/Paris.")
    overlap: Overlap = Field(
        models.Schedule.Overlap.SKIP.value,
        description="What a due time does while the last run is still active.",
    )
    enabled: bool = Field(True, description="`false`: paused, no runs.")


class ScheduleCreate(ScheduleFields):
    kind: str = Field(description="A submittable job kind.", json_schema_extra=SUBMITTABLE)


class KindCap(Body):
    cap: int | None = Field(description="Jobs run at once; `null`: the default cap.")


class KindPause(Body):
    reason: str | None = Field(None, description="Shown to users whose jobs wait.")


class WebhookCreate(Body):
    url: str = Field(
        max_length=MAX_URL,
        description="Where deliveries go: http(s), a host the outbound guard allows.",
    )
    events: list[NoticeEvent] = Field(description="Events to send, at least one.")
    global_: bool | None = Field(None, alias="global", description="Staff: for every user's jobs.")


class EmailNotices(Body):
    events: list[NoticeEvent] | str | None = Field(
        None, description="Events you get e-mail for (or `a,b` text); `[]` or absent: none."
    )


class NoBody(Body):
    """No body, or `{}`."""


# --- answers ---------------------------------------------------------------------


class Job(Answer):
    id: int
    kind: str
    label: str
    title: str
    owner: str | None
    status: JobStatus
    active: bool
    requested: str = Field(description="A pending request to the worker: `''`, `pause`, ...")
    priority: Priority
    total: int | None
    processed: int
    failed: int
    percent: int | float | None
    message: str
    error: str
    rate: float | None = Field(description="Units a second.")
    eta_seconds: float | None
    attempts: int
    cpu_seconds: float
    peak_rss_mb: float | None
    spent: dict[str, Any]
    entity_key: str
    session_key: str
    url: str = Field(description="The job's page.")
    created_at: DateTime
    started_at: DateTime | None
    finished_at: DateTime | None
    cancelled_at: DateTime | None
    run_after: DateTime | None = Field(description="Not started before then.")
    next_retry_at: DateTime | None = Field(description="A retry-waiting job's next try.")
    schedule: int | None = Field(description="The schedule that started it.")
    scheduled_for: DateTime | None = Field(description="Its schedule's due time.")
    batch: int | None
    next_run_at: DateTime | None = Field(
        description="When a waiting job runs (its scheduled or retry time); null when it "
        "waits for something else or for a worker."
    )
    waiting_reason: Literal["", "kind_paused", "paused", "dependencies", "scheduled", "retry"] = (
        Field(description='Why an active job is not running; `""` when it is, or is next.')
    )
    depends_on: list[int]
    waiting_for: list[int] = Field(description="Of `depends_on`, those not yet succeeded.")
    reused: Any = Field(None, description="Units answered from earlier results, when any.")


class JobDetail(Job):
    params: Any
    result: Any
    time_limit: float | None
    run_seconds: float
    max_attempts: int | None
    traceback: str | None = Field(description="For the job's owner and staff.")


class JobPage(Answer):
    results: list[Job]
    count: int = Field(description="Rows on all pages.")
    page: int
    pages: int
    page_size: int


class JobOrPage(RootModel[JobDetail | JobPage]):
    """One job for an exact key; a page of jobs for a key ending in `*`."""


class Event(Answer):
    id: int
    at: DateTime
    kind: str
    status: str
    message: str
    data: Any


class JobWithEvents(JobDetail):
    events: list[Event] = Field(description="The most recent events, oldest first.")


class Submitted(JobDetail):
    deduplicated: bool = Field(description="An active job with the same key was returned.")


class PageNumbers(Answer):
    count: int = Field(description="Rows on all pages.")
    page: int
    pages: int
    page_size: int


class JobsInStates(Answer):
    results: list[Job]
    count: int
    statuses: list[JobStatus]


class RecentCompletions(Answer):
    results: list[Job]
    since: DateTime
    now: DateTime
    more: bool = Field(description="More finished since; ask again from the last one.")


class Notification(Answer):
    id: int
    level: Level
    message: str
    url: str
    job_id: int | None
    batch_id: int | None
    created_at: DateTime
    read_at: DateTime | None
    read: bool


class NotificationPage(PageNumbers):
    results: list[Notification]
    unread_count: int


class Marked(Answer):
    marked: int
    unread_count: int


class BatchJob(Answer):
    id: int
    status: JobStatus
    percent: int | float | None


class Batch(Answer):
    id: int
    label: str
    title: str
    owner: str | None
    job_count: int
    unfinished: int
    finished: bool
    percent: int
    jobs: list[BatchJob]
    url: str
    created_at: DateTime
    finished_at: DateTime | None


class BatchPage(PageNumbers):
    results: list[Batch]


class OnComplete(Answer):
    kind: str | None
    job: int | None
    error: str


class BatchDetail(Batch):
    on_complete: OnComplete | None


class BatchCreated(Batch):
    job_details: list[Job]


class BatchActed(Batch):
    changed: int
    skipped: list[str] = Field(description="Why each job left alone was.")


class Schedule(Answer):
    id: int
    name: str
    title: str
    owner: str | None
    kind: str
    params: Any
    priority: Priority
    cron: str | None
    every: int | None = Field(description="Seconds.")
    timezone: str
    when: str
    overlap: Overlap
    enabled: bool
    paused_reason: str
    next_run_at: DateTime | None
    last_run_at: DateTime | None
    last_job: int | None
    last_job_status: JobStatus | None
    run_count: int
    last_skipped_at: DateTime | None
    skipped_count: int
    last_error: str
    created_at: DateTime
    updated_at: DateTime


class SchedulePage(PageNumbers):
    results: list[Schedule]


class ScheduleDetail(Schedule):
    runs: list[Job]


class Kind(Answer):
    name: str
    type: Literal["kind", "processor", "unknown"]
    kind: str
    paused: bool
    paused_at: DateTime | None
    paused_by: str
    reason: str
    cap: int | None
    default_cap: int | None
    notice: str
    updated_at: DateTime | None
    updated_by: str


class KindList(Answer):
    results: list[Kind]


class Webhook(Answer):
    id: int
    url: str
    events: list[str]
    global_: bool = Field(alias="global")
    active: bool
    failures: int
    disabled_reason: str
    created_at: DateTime


class WebhookCreated(Webhook):
    secret: str = Field(description="Signs the deliveries; shown this once.")


class WebhookList(Answer):
    results: list[Webhook]


class Delivery(Answer):
    id: int
    event: str
    job: int | None
    batch: int | None
    status: str
    attempts: int
    response_code: int | None
    error: str
    created_at: DateTime
    attempted_at: DateTime | None
    next_attempt_at: DateTime | None


class DeliveryList(Answer):
    results: list[Delivery]


class EmailNoticesAnswer(Answer):
    events: list[str]
    email: str


class OpenApiDocument(Answer):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
