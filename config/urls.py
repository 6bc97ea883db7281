"""URL map: the app pages, the JSON API, the admin, auth and health."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from jobs.web import health, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("jobs.api.urls")),
    path("jobs/", include("jobs.web.urls")),
    path("schedules/", include("jobs.web.schedule_urls")),
    path("metrics/", include("jobs.web.metrics_urls")),
    path("ops/", include("jobs.web.ops_urls")),
    path("sheets/", include("sheets.web.urls")),
]

# Under /api/ errors are JSON in the API's shape; elsewhere Django's pages.
handler400 = "jobs.api.errors.bad_request"
handler403 = "jobs.api.errors.permission_denied"
handler404 = "jobs.api.errors.page_not_found"
handler500 = "jobs.api.errors.server_error"
