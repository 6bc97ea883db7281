"""URLs of the Schedules page (mounted at /schedules/)."""

from __future__ import annotations

from django.urls import path

from jobs.web import schedule_views

app_name = "schedules"

urlpatterns = [
    path("", schedule_views.schedule_list, name="list"),
    path("<int:schedule_id>/<slug:action>/", schedule_views.schedule_action, name="action"),
]
