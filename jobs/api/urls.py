"""URLs of the JSON API, mounted at /api/ (see `jobs.api.views` for the conventions).

The action routes are built from the registries (`jobs.actions`): one
`POST .../<id>/<name>/` per entry, named after it (`api:cancel`, `api:schedule-pause`).
"""

from __future__ import annotations

from django.urls import path, re_path

from jobs.actions.jobs import JOBS
from jobs.actions.schedules import SCHEDULES
from jobs.api import batches, kinds, openapi, schedules, webhooks
from jobs.api import views as api

app_name = "api"

urlpatterns = [
    path("jobs/", api.jobs, name="jobs"),
    path("jobs/running/", api.running, name="running"),
    path("jobs/active/", api.active, name="active"),
    path("jobs/recent-completions/", api.recent_completions, name="recent-completions"),
    path("jobs/by-session/<path:key>/", api.by_session, name="by-session"),
    path("jobs/by-entity/<path:key>/", api.by_entity, name="by-entity"),
    path("jobs/<str:job_id>/", api.job, name="job"),
    *[
        path(
            f"jobs/<str:job_id>/{action.name}/", api.job_action_view(action.name), name=action.name
        )
        for action in JOBS.values()
    ],
    path("notifications/", api.notifications, name="notifications"),
    path("notifications/mark-read/", api.notifications_mark_read, name="notifications-mark-read"),
    path("batches/", batches.batches, name="batches"),
    path("batches/<str:batch_id>/", batches.batch, name="batch"),
    path("batches/<str:batch_id>/<slug:action>/", batches.batch_action, name="batch-action"),
    path("schedules/", schedules.schedules, name="schedules"),
    path("schedules/<str:schedule_id>/", schedules.schedule, name="schedule"),
    *[
        path(
            f"schedules/<str:schedule_id>/{action.name}/",
            schedules.schedule_action_view(action.name),
            name=f"schedule-{action.name}",
        )
        for action in SCHEDULES.values()
    ],
    path("kinds/", kinds.kinds, name="kinds"),
    path("kinds/<str:name>/", kinds.kind, name="kind"),
    path("kinds/<str:name>/pause/", kinds.kind_pause_view, name="kind-pause"),
    path("kinds/<str:name>/resume/", kinds.kind_resume_view, name="kind-resume"),
    path("webhooks/", webhooks.webhooks, name="webhooks"),
    path("webhooks/<str:webhook_id>/", webhooks.webhook, name="webhook"),
    path("webhooks/<str:webhook_id>/test/", webhooks.webhook_test, name="webhook-test"),
    path("webhooks/<str:webhook_id>/enable/", webhooks.webhook_enable, name="webhook-enable"),
    path(
        "webhooks/<str:webhook_id>/deliveries/",
        webhooks.webhook_deliveries,
        name="webhook-deliveries",
    ),
    path("notices/email/", webhooks.email_notices, name="email-notices"),
    path("openapi.json", api.api_view("GET")(openapi.openapi_json), name="openapi"),
    path("docs/", openapi.docs, name="docs"),
    re_path(r"^(?P<rest>[\s\S]*)$", api.not_found),  # any character, a newline too
]
