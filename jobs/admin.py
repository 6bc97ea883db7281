"""The Django admin for operators: every job, its timeline, failures, notifications,
workers, schedules and API tokens.

Jobs are read-only here; the bulk actions are built from the action registries
(`jobs.actions`: one admin action per entry, through the services), report how many
changed and name the ones skipped and why.
Secret parameters are masked (`jobs.engine.redact`). A kind's app adds links to a job's
page (e.g. its sheet and row results) through `jobs.extensions`.
django-q2's own admin (tasks, failures, schedules, queue) stays registered as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobs import extensions, selectors
from jobs.actions import kinds as kind_actions
from jobs.actions.base import Action, Registry
from jobs.actions.jobs import JOBS
from jobs.actions.schedules import SCHEDULES
from jobs.engine.errors import JobActionError, UnknownKind
from jobs.engine.redact import redact
from jobs.engine.services import notifications_set_read
from jobs.models import (
    ApiToken,
    Batch,
    FailedJob,
    Job,
    JobEvent,
    KindControl,
    Notification,
    Schedule,
    Webhook,
    WebhookDelivery,
    Worker,
)
from jobs.notices import services as notices
from jobs.templatetags.jobs_extras import duration, pretty_json
from jobs.tokens import token_revoke

TIMELINE_LIMIT = 200  # events shown on a job's page (newest), however long its life
SKIPS_SHOWN = 10


def status_badge(job: Job) -> SafeString:
    """The status as a coloured badge; colours by status in static/css/admin-jobs.css
    (no inline style: the CSP has no 'unsafe-inline')."""
    label = job.get_status_display()
    if job.requested:
        label += f" ({job.get_requested_display().lower()} requested)"
    return format_html('<span class="job-status" data-status="{}">{}</span>', job.status, label)


def change_link(model: str, pk: int | None) -> SafeString | str:
    """`#12` linked to a jobs row's admin page (`model` as in the URL name: job, batch),
    or "—" when there is no row."""
    if not pk:
        return "—"
    return format_html('<a href="{}">#{}</a>', reverse(f"admin:jobs_{model}_change", args=[pk]), pk)


def exact_time(when) -> str:
    """Times to the second (the admin's default drops the seconds)."""
    return date_format(timezone.localtime(when), "Y-m-d H:i:s") if when else "—"


def time_field(name: str) -> Callable[[Any, Job], str]:
    """A read-only admin field showing the job's `name` timestamp to the second."""

    def show(model_admin: Any, job: Job) -> str:
        return exact_time(getattr(job, name))

    return admin.display(description=Job._meta.get_field(name).verbose_name)(show)


def json_block(value: Any) -> SafeString:
    return format_html('<pre class="admin-pre">{}</pre>', pretty_json(value))


def plural(count: int, word: str = "job") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- actions from the registries ----------------------------------------------------


def report(model_admin: Any, request: HttpRequest, done: list[str], skipped: list[str]) -> None:
    """One message: '3 jobs cancelled; 2 skipped: Job #4 is succeeded; ...'."""
    text = ", ".join(done) if done else "Nothing changed"
    level = messages.SUCCESS
    if skipped:
        reasons = " ".join(skipped[:SKIPS_SHOWN])
        if len(skipped) > SKIPS_SHOWN:
            reasons += f" …and {len(skipped) - SKIPS_SHOWN} more."
        text += f"; {len(skipped)} skipped: {reasons}"
        level = messages.WARNING
    model_admin.message_user(request, text, level)


def admin_action(registry: Registry, action: Action) -> Callable[..., Any]:
    """The admin action of a registry entry: run it on each selected object (one it
    does not apply to, or whose service refuses it, is a skip) and report. Changing
    needs the admin's "operate" permission, deleting its "delete" one; a delete asks
    first (the admin's `confirm_delete`)."""

    def run(model_admin: Any, request: HttpRequest, queryset: QuerySet) -> Any:
        if action.permission == "delete" and request.POST.get("post") != "yes":
            return model_admin.confirm_delete(request, queryset)
        changed, skipped = [], []
        for obj in queryset.select_related(None).order_by("pk"):
            try:
                result = action.run(obj, by=request.user)
            except (JobActionError, UnknownKind) as exc:
                skipped.append(str(exc))
                continue
            changed.append(obj)
            skipped.extend(getattr(result, "skipped", ()))  # a batch's jobs skipped
        report(model_admin, request, registry.reported(action, changed), skipped)
        return None

    run.__name__ = action.admin_name or f"{action.name.replace('-', '_')}_{registry.plural}"
    permission = "operate" if action.permission == "change" else action.permission
    return admin.action(description=registry.description(action), permissions=[permission])(run)


def admin_actions(registry: Registry) -> list[Callable[..., Any]]:
    return [admin_action(registry, action) for action in registry.values()]


# -- filters ----------------------------------------------------------------------


class PriorityFilter(admin.SimpleListFilter):
    title = "priority"
    parameter_name = "priority"

    def lookups(self, request, model_admin):
        return [("high", "high (above normal)"), ("normal", "normal"), ("low", "low (below)")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "high":
            return queryset.filter(priority__gt=0)
        if value == "normal":
            return queryset.filter(priority=0)
        if value == "low":
            return queryset.filter(priority__lt=0)
        return queryset


# -- the event timeline ---------------------------------------------------------


class ViewOnly:
    """Rows made and changed by the engine, the services and the actions below, never by
    an admin form: no add page, and the change page only shows (staff with the
    "change" permission act through the actions). Deleting is each admin's own call."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class JobEventInline(ViewOnly, admin.TabularInline):
    model = JobEvent
    fields = ["time", "kind", "status", "message", "data_json"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name = "event"
    verbose_name_plural = f"timeline (newest {TIMELINE_LIMIT} events)"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobEvent]:
        """Only the newest events: a job running for days has thousands of progress events."""
        events = super().get_queryset(request)
        object_id = (
            request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        )
        if object_id and str(object_id).isdigit():
            newest = JobEvent.objects.filter(job_id=int(object_id)).order_by("-id")
            events = events.filter(
                pk__in=list(newest.values_list("pk", flat=True)[:TIMELINE_LIMIT])
            )
        return events.order_by("id")

    @admin.display(description="at")
    def time(self, event: JobEvent) -> str:
        return exact_time(event.at)

    @admin.display(description="data")
    def data_json(self, event: JobEvent) -> str:
        return json_block(redact(event.data)) if event.data else "—"


# -- lookups ------------------------------------------------------------------------


class FilterLookupsOnly:
    """URL lookups only on the fields the list filters offer (plus `extra_lookups`), with
    plain comparisons: Django otherwise lets any staff user filter on a local field with
    any lookup (`?params__options__api_key__regex=^sk-a`), an oracle that reads a masked
    value one character at a time. Anything else is Django's DisallowedModelAdminLookup,
    a 400 "Bad request"."""

    extra_lookups: tuple[str, ...] = ()
    plain_parts = frozenset({"exact", "in", "isnull", "gt", "gte", "lt", "lte", "id", "pk"})

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        field, *rest = lookup.split("__")
        offered = set(self.extra_lookups)
        for item in self.get_list_filter(request) if request else self.list_filter:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                offered.add(item.parameter_name)
            else:
                offered.add(item if isinstance(item, str) else item[0])
        if field not in offered or not self.plain_parts.issuperset(rest):
            return False
        return super().lookup_allowed(lookup, value, request)


# -- jobs -------------------------------------------------------------------------


@admin.register(Job)
class JobAdmin(ViewOnly, FilterLookupsOnly, admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "status_badge",
        "kind",
        "owner",
        "priority_display",
        "progress",
        "attempts",
        "created_at",
        "duration_display",
    ]
    list_display_links = ["id", "title"]
    list_filter = [
        "status",
        "kind",
        ("owner", admin.RelatedOnlyFieldListFilter),
        PriorityFilter,
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", admin.DateFieldListFilter),
    ]
    search_fields = ["entity_key", "session_key", "owner__username", "label", "error"]
    extra_lookups = ("entity_key", "batch")  # a sheet's and a batch's admin pages link here
    search_help_text = (
        "Job id (12 or #12), entity or session key, owner, label or error text; "
        "path=value for a parameter (processor=llm, options.model=gpt-4o-mini)."
    )
    list_select_related = ["owner"]
    list_per_page = 50
    show_full_result_count = False
    ordering = ["-created_at", "-id"]
    inlines = [JobEventInline]  # styled by admin-jobs.css (templates/admin/base_site.html)

    actions = admin_actions(JOBS)
    fieldsets = [
        (None, {"fields": ["id", "title", "kind", "status_badge", "owner", "priority_display"]}),
        (
            "Progress",
            {
                "fields": [
                    "progress",
                    "message",
                    "attempts_display",
                    "run_time",
                    "cpu_seconds",
                    "peak_rss_mb",
                    "spent",
                    "links",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "created_at_exact",
                    "started_at_exact",
                    "wait",
                    "finished_at_exact",
                    "duration_display",
                ]
            },
        ),
        ("Keys", {"fields": ["entity_key", "session_key", "dependencies", "batch_link"]}),
        ("Parameters and result", {"fields": ["params_json", "result_json"]}),
        ("Error", {"fields": ["error_display", "traceback_display"]}),
        (
            "Engine",
            {
                "classes": ["collapse"],
                "fields": [
                    "cursor_json",
                    "requested",
                    "lease_owner",
                    "lease_expires_at_exact",
                    "heartbeat_at_exact",
                    "dispatched_at_exact",
                    "run_after_exact",
                    "cancelled_at_exact",
                    "updated_at_exact",
                ],
            },
        ),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)  # view-only: every field shown

    # -- permissions: jobs are made by users and changed by the actions only -------
    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # No per-object delete page: Django's would list every row result of the job.
        return obj is None and request.user.has_perm("jobs.delete_job")

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Retry, cancel, pause and resume: for staff who may change jobs."""
        return request.user.has_perm("jobs.change_job")

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_jobs (finished jobs only)
        return actions

    def get_search_results(self, request, queryset, search_term):
        """Besides the text fields, a number (or #number) finds the job with that id, and
        `path=value` terms a job by the params its kind lets users search (never a
        secret: `job_kind(search_params=...)`); a path no kind offers is plain text."""
        try:
            terms, rest = selectors.search_terms(search_term)
        except ValueError:
            terms, rest = [], search_term
        for path, value in terms:
            queryset = queryset.filter(selectors.param_match(path, value))
        search_term = rest
        base = queryset
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit() and len(term) < 19:
            queryset = queryset | base.filter(pk=int(term))
        return queryset, may_have_duplicates

    # -- columns and fields -----------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> SafeString:
        return status_badge(job)

    @admin.display(description="priority", ordering="priority")
    def priority_display(self, job: Job) -> str:
        return job.priority_label

    @admin.display(description="progress")
    def progress(self, job: Job) -> str:
        done = f"{job.processed:,}" + (f" / {job.total:,}" if job.total is not None else "")
        if job.percent is not None:
            done += f" ({job.percent}%)"
        return done + (f", {job.failed:,} failed" if job.failed else "")

    @admin.display(description="duration")
    def duration_display(self, job: Job) -> str:
        return duration(job.duration_seconds)

    @admin.display(description="attempts")
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts} of {job.max_attempts}"

    @admin.display(description="running time")
    def run_time(self, job: Job) -> str:
        used = duration(job.run_seconds)
        return f"{used} (limit {duration(job.time_limit)})" if job.time_limit else used

    # Times to the second, under the field's own label.
    created_at_exact = time_field("created_at")
    started_at_exact = time_field("started_at")
    finished_at_exact = time_field("finished_at")
    lease_expires_at_exact = time_field("lease_expires_at")
    heartbeat_at_exact = time_field("heartbeat_at")
    dispatched_at_exact = time_field("dispatched_at")
    run_after_exact = time_field("run_after")
    cancelled_at_exact = time_field("cancelled_at")
    updated_at_exact = time_field("updated_at")

    @admin.display(description="waited before starting")
    def wait(self, job: Job) -> str:
        if job.started_at is None:
            return "—"
        return duration((job.started_at - job.created_at).total_seconds())

    @admin.display(description="parameters")
    def params_json(self, job: Job) -> SafeString:
        return json_block(redact(job.params))

    @admin.display(description="result")
    def result_json(self, job: Job) -> SafeString | str:
        return json_block(redact(job.result)) if job.result is not None else "—"

    @admin.display(description="cursor")
    def cursor_json(self, job: Job) -> SafeString | str:
        return json_block(job.cursor) if job.cursor is not None else "—"

    @admin.display(description="error")
    def error_display(self, job: Job) -> SafeString | str:
        if not job.error:
            return "—"
        return format_html('<pre class="admin-pre">{}</pre>', job.error)

    @admin.display(description="traceback")
    def traceback_display(self, job: Job) -> SafeString | str:
        if not job.traceback:
            return "—"
        return format_html(
            '<pre class="admin-pre admin-traceback">{}</pre>',
            job.traceback,
        )

    @admin.display(description="pipeline")
    def dependencies(self, job: Job) -> SafeString | str:
        """The jobs it waits for, and those waiting for it."""
        upstream = [(link.depends_on_id, "waits for") for link in job.upstream_links.all()]
        downstream = [(link.job_id, "then") for link in job.downstream_links.all()]
        if not upstream and not downstream:
            return "—"
        return format_html_join(
            " · ",
            "{} {}",
            ((word, change_link("job", other)) for other, word in upstream + downstream),
        )

    @admin.display(description="batch")
    def batch_link(self, job: Job) -> SafeString | str:
        return change_link("batch", job.batch_id)

    @admin.display(description="links")
    def links(self, job: Job) -> SafeString:
        found = [("Live page", job.get_absolute_url()), *extensions.admin_links(job)]
        return format_html_join(
            " · ", '<a href="{}">{}</a>', ((url, label) for label, url in found)
        )

    # -- bulk actions: `JOBS`, see `admin_action` ----------------------------------------
    def confirm_delete(self, request: HttpRequest, queryset: QuerySet[Job]) -> TemplateResponse:
        """Asks before deleting, like Django's own delete action, counting the active
        jobs that will be skipped."""
        jobs = list(queryset.select_related("owner").order_by("pk")[:500])
        finished = [job for job in jobs if job.is_terminal]
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete jobs?",
            "opts": self.model._meta,
            "jobs": jobs,
            "finished_count": len(finished),
            "active_count": len(jobs) - len(finished),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
            "selected_ids": [job.pk for job in jobs],
            "total_selected": queryset.count(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/jobs/job/delete_jobs_confirmation.html", context)


@admin.register(FailedJob)
class FailedJobAdmin(JobAdmin):
    """A one-click list of failures, newest first, with the error in the list."""

    list_display = [
        "id",
        "title",
        "kind",
        "owner",
        "error_summary",
        "progress",
        "attempts",
        "finished_at",
    ]
    list_filter = [
        "kind",
        ("owner", admin.RelatedOnlyFieldListFilter),
        PriorityFilter,
        ("finished_at", admin.DateFieldListFilter),
    ]
    ordering = ["-finished_at", "-id"]
    actions = [
        action
        for action in JobAdmin.actions
        if action.__name__ in ("retry_jobs", "retry_failed_rows", "delete_jobs")
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).filter(status=Job.Status.FAILED)

    def has_view_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        """The same people as the job list (the proxy's own permissions are not needed)."""
        return request.user.has_perm("jobs.view_job") or request.user.has_perm("jobs.change_job")

    @admin.display(description="error")
    def error_summary(self, job: Job) -> str:
        first_line = (job.error or "").strip().splitlines()[:1]
        return (first_line[0][:160] if first_line else "") or "—"


# -- schedules ------------------------------------------------------------------------


@admin.register(Schedule)
class ScheduleAdmin(ViewOnly, admin.ModelAdmin):
    """Schedules, read-only: made through the API and CLI, paused, resumed and run now
    through `jobs.schedules.services` by the actions below."""

    # The page shows the list's columns, with the pause reason, the last skip and error,
    # the parameters and the row's times added.
    what = ["id", "title", "kind", "owner", "when", "overlap", "enabled"]
    runs = ["next_run_exact", "last_run_link", "run_count", "skipped_count"]
    list_display = [*what, *runs]
    list_display_links = ["id", "title"]
    list_filter = ["enabled", "overlap", "kind", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "kind", "owner__username", "cron"]
    list_select_related = ["owner", "last_job"]
    ordering = ["name", "id"]
    actions = admin_actions(SCHEDULES)
    fields = [
        *what,
        "paused_reason",
        *runs,
        "last_skipped_at",
        "last_error",
        "params_json",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_schedule")

    @admin.display(description="next run", ordering="next_run_at")
    def next_run_exact(self, schedule: Schedule) -> str:
        return exact_time(schedule.next_run_at) if schedule.enabled else "paused"

    @admin.display(description="last run")
    def last_run_link(self, schedule: Schedule) -> str:
        job = schedule.last_job
        if job is None:
            return exact_time(schedule.last_run_at)
        return format_html("{} {}", change_link("job", job.pk), status_badge(job))

    @admin.display(description="parameters")
    def params_json(self, schedule: Schedule) -> SafeString:
        return json_block(redact(schedule.params))

    def confirm_delete(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> Any:
        """Django's own confirmation page; its "yes" comes back to the registry's delete
        (named `delete_selected` here, in place of Django's), which uses the service."""
        return delete_selected(self, request, queryset)


# -- notifications, workers, tokens ---------------------------------------------------


def timestamp_set_filter(field: str, title: str, unset: str, set_: str) -> type:
    """A list filter on whether a nullable timestamp (read_at, revoked_at) is set."""

    class TimestampSetFilter(admin.SimpleListFilter):
        parameter_name = title

        def lookups(self, request, model_admin):
            return [("no", unset), ("yes", set_)]

        def queryset(self, request, queryset):
            if self.value() in ("no", "yes"):
                return queryset.filter(**{f"{field}__isnull": self.value() == "no"})
            return queryset

    TimestampSetFilter.title = title
    return TimestampSetFilter


ReadFilter = timestamp_set_filter("read_at", "read", "unread", "read")
RevokedFilter = timestamp_set_filter("revoked_at", "revoked", "active", "revoked")


@admin.register(Notification)
class NotificationAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["id", "user", "level", "message", "job_link", "created_at", "is_read"]
    list_filter = ["level", ReadFilter, ("created_at", admin.DateFieldListFilter)]
    search_fields = ["message", "user__username"]
    list_select_related = ["user"]
    readonly_fields = ["user", "job_link", "level", "message", "url", "created_at", "read_at"]
    fields = readonly_fields
    actions = ["mark_read", "mark_unread"]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_notification")

    @admin.display(description="job", ordering="job")
    def job_link(self, notification: Notification) -> SafeString | str:
        return change_link("job", notification.job_id)

    @admin.display(description="read", boolean=True)
    def is_read(self, notification: Notification) -> bool:
        return notification.read_at is not None

    @admin.action(description="Mark selected notifications read", permissions=["operate"])
    def mark_read(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = notifications_set_read(list(queryset.values_list("pk", flat=True)), read=True)
        self.message_user(request, f"{plural(count, 'notification')} marked read.")

    @admin.action(description="Mark selected notifications unread", permissions=["operate"])
    def mark_unread(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = notifications_set_read(list(queryset.values_list("pk", flat=True)), read=False)
        self.message_user(request, f"{plural(count, 'notification')} marked unread.")


@admin.register(Batch)
class BatchAdmin(ViewOnly, admin.ModelAdmin):
    """Batches, read-only: their jobs are acted on in bulk from the job list (filtered to
    the batch by the link here) or the batch's page."""

    list_display = [
        "id",
        "title",
        "owner",
        "job_count",
        "unfinished",
        "created_at",
        "finished_at",
        "jobs_link",
    ]
    list_display_links = ["id", "title"]
    list_filter = [
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["label", "owner__username"]
    list_select_related = ["owner"]
    fields = list_display  # the page shows what the list shows
    readonly_fields = fields

    @admin.display(description="jobs")
    def jobs_link(self, batch: Batch) -> SafeString:
        url = reverse("admin:jobs_job_changelist") + f"?batch__id__exact={batch.pk}"
        page = batch.get_absolute_url()
        return format_html('<a href="{}">Its jobs</a> · <a href="{}">Live page</a>', url, page)


@admin.register(Worker)
class WorkerAdmin(ViewOnly, admin.ModelAdmin):
    """Worker processes as their heartbeats report them; stale rows are cleaned up by
    recovery after a few minutes."""

    list_display = [
        "name",
        "cluster",
        "is_alive",
        "current_job",
        "rss_mb",
        "started_at",
        "last_seen_at",
    ]
    list_filter = ["host", "cluster"]
    search_fields = ["name", "cluster"]
    readonly_fields = ["name", "host", "pid", *list_display[1:]]  # the columns, host and pid
    fields = readonly_fields
    ordering = ["cluster", "name"]

    @admin.display(description="alive", boolean=True)
    def is_alive(self, worker: Worker) -> bool:
        return worker.is_alive

    @admin.display(description="running job")
    def current_job(self, worker: Worker) -> SafeString | str:
        return change_link("job", worker.current_job_id)


@admin.register(ApiToken)
class ApiTokenAdmin(ViewOnly, admin.ModelAdmin):
    """API tokens (created with `manage.py conveyor_token`); only their prefix is shown."""

    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "is_active"]
    list_filter = [RevokedFilter]
    search_fields = ["prefix", "name", "user__username"]
    list_select_related = ["user"]
    readonly_fields = ["prefix", "name", "user", "created_at", "last_used_at", "revoked_at"]
    fields = readonly_fields
    actions = ["revoke_tokens"]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_apitoken")

    @admin.display(description="active", boolean=True)
    def is_active(self, token: ApiToken) -> bool:
        return not token.is_revoked

    @admin.action(description="Revoke selected tokens", permissions=["operate"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        for token in active:
            token_revoke(token)
        self.message_user(request, f"{plural(len(active), 'token')} revoked.")


# -- kind controls ----------------------------------------------------------------------


class KindControlForm(forms.ModelForm):
    """Pause or resume a kind, queue or processor, and set its cap; saved through
    `jobs.actions.kinds` (never by the form itself), which checks every field."""

    paused = forms.BooleanField(required=False, help_text="Hold its jobs on every cluster.")

    class Meta:
        model = KindControl
        fields = ["name", "paused", "reason", "cap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].help_text = "A job kind, tasks.<queue> or a processor (llm)."
        if self.instance.pk:
            self.fields["paused"].initial = self.instance.is_paused

    def validate_unique(self) -> None:
        """A name that has a row already is changed, not refused (the service upserts)."""

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not self.instance.pk and name not in kind_actions.known_names():
            raise forms.ValidationError("Not a job kind, Tasks queue or processor.")
        return name

    def clean_cap(self) -> int | None:
        cap = self.cleaned_data["cap"]
        if cap is not None and not 1 <= cap <= kind_actions.MAX_CAP:
            raise forms.ValidationError(f"A whole number from 1 to {kind_actions.MAX_CAP}.")
        return cap


@admin.register(KindControl)
class KindControlAdmin(admin.ModelAdmin):
    """Operators' holds on kinds of work (also on the ops page, the API and the CLI)."""

    form = KindControlForm
    list_display = ["name", "paused_at", "paused_by", "reason", "cap", "updated_by", "updated_at"]
    list_filter = [("paused_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "reason"]
    actions = ["pause_selected", "resume_selected"]

    def get_readonly_fields(self, request: HttpRequest, obj: KindControl | None = None):
        return ["name"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # resume and "cap: empty" undo a control; its row keeps who did it

    def save_model(self, request: HttpRequest, obj: KindControl, form, change: bool) -> None:
        data = form.cleaned_data
        name = obj.name if change else data["name"]
        try:
            if data["paused"]:
                row = kind_actions.kind_pause(name, by=request.user, reason=data["reason"])
            else:
                row = kind_actions.kind_resume(name, by=request.user)
            row = kind_actions.kind_cap(name, data["cap"], by=request.user)
        except (kind_actions.ControlError, JobActionError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            row = KindControl.objects.filter(name=name).first() or obj
        obj.pk = row.pk

    def _each(self, request: HttpRequest, queryset, change: Callable[..., Any], done: str) -> None:
        for row in queryset:
            try:
                change(row.name, by=request.user)
            except JobActionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return
        self.message_user(request, f"{queryset.count()} {done}.", messages.SUCCESS)

    @admin.action(description="Pause selected kinds on every cluster")
    def pause_selected(self, request: HttpRequest, queryset) -> None:
        self._each(request, queryset, kind_actions.kind_pause, "paused")

    @admin.action(description="Resume selected kinds")
    def resume_selected(self, request: HttpRequest, queryset) -> None:
        self._each(request, queryset, kind_actions.kind_resume, "resumed")


# -- webhooks ---------------------------------------------------------------------------


@admin.register(Webhook)
class WebhookAdmin(ViewOnly, FilterLookupsOnly, admin.ModelAdmin):
    """Webhooks and e-mail opt-ins (added on the settings page, the API or the CLI:
    the secret is made there and shown once; never here). Staff switch them on or off."""

    list_display = ["__str__", "owner", "channel", "events", "active", "failures", "created_at"]
    list_filter = ["channel", "active"]
    search_fields = ["url", "owner__username"]
    list_select_related = ["owner"]
    fields = ["owner", "channel", "url", "events", "active", "failures", "disabled_reason"]
    readonly_fields = fields
    actions = ["enable_selected", "disable_selected"]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_webhook")

    @admin.action(description="Enable selected webhooks", permissions=["operate"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        for webhook in queryset:
            notices.webhook_enable(webhook)
        self.message_user(request, f"{plural(queryset.count(), 'webhook')} enabled.")

    @admin.action(description="Disable selected webhooks", permissions=["operate"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        changed = queryset.update(active=False, disabled_reason="Disabled by an operator")
        self.message_user(request, f"{plural(changed, 'webhook')} disabled.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ViewOnly, FilterLookupsOnly, admin.ModelAdmin):
    """The delivery log (pruned after CONVEYOR_WEBHOOK_KEEP_DAYS)."""

    list_display = ["event", "webhook", "job_id", "batch_id", "status", "attempts", "response_code"]
    list_filter = ["status", "event"]
    list_select_related = ["webhook"]
    fields = [
        "webhook", "event", "job_id", "batch_id", "status", "attempts", "response_code",
        "error", "created_at", "attempted_at", "next_attempt_at",
    ]  # fmt: skip
    readonly_fields = fields
