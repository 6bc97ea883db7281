"""Pages of the jobs app."""

from __future__ import annotations

from django.urls import path

from jobs.web import views, webhooks

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("bulk/", views.job_bulk, name="bulk"),
    path("notifications/", views.notifications, name="notifications"),
    path("webhooks/", webhooks.webhooks, name="webhooks"),
    path("webhooks/email/", webhooks.email_notices, name="email_notices"),
    path("webhooks/<int:webhook_id>/", webhooks.webhook_detail, name="webhook"),
    path(
        "webhooks/<int:webhook_id>/<slug:action>/",
        webhooks.webhook_action,
        name="webhook_action",
    ),
    path("batches/<int:batch_id>/", views.batch_detail, name="batch"),
    path("batches/<int:batch_id>/<slug:action>/", views.batch_action, name="batch_action"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/<slug:action>/", views.job_action, name="action"),
]
