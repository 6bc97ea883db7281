"""URLs of the JSON API, mounted at /api/ (see `jobs.api.views` for the conventions)."""

from __future__ import annotations

from django.urls import path, re_path

from jobs.api import batches, schedules
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
    path("jobs/<str:job_id>/cancel/", api.job_cancel_view, name="cancel"),
    path("jobs/<str:job_id>/pause/", api.job_pause_view, name="pause"),
    path("jobs/<str:job_id>/resume/", api.job_resume_view, name="resume"),
    path("jobs/<str:job_id>/retry/", api.job_retry_view, name="retry"),
    path("notifications/", api.notifications, name="notifications"),
    path("notifications/mark-read/", api.notifications_mark_read, name="notifications-mark-read"),
    path("batches/", batches.batches, name="batches"),
    path("batches/<str:batch_id>/", batches.batch, name="batch"),
    path("batches/<str:batch_id>/<slug:action>/", batches.batch_action, name="batch-action"),
    path("schedules/", schedules.schedules, name="schedules"),
    path("schedules/<str:schedule_id>/", schedules.schedule, name="schedule"),
    path(
        "schedules/<str:schedule_id>/run-now/",
        schedules.schedule_run_now_view,
        name="schedule-run-now",
    ),
    re_path(r"^(?P<rest>.*)$", api.not_found),
]
