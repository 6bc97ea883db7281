"""URLs of the staff ops pages (mounted at /ops/)."""

from __future__ import annotations

from django.urls import path

from jobs.web import ops_views

app_name = "ops"

urlpatterns = [
    path("", ops_views.kinds_page, name="kinds"),
    path("kinds/<str:name>/<slug:change>/", ops_views.kind_change, name="kind_change"),
    path("jobs/<int:job_id>/force-stop/", ops_views.force_stop, name="force_stop"),
    path("waiting/", ops_views.waiting_page, name="waiting"),
    path("waiting/<int:job_id>/run-now/", ops_views.run_now, name="run_now"),
]
