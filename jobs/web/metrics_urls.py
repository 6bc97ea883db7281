"""URLs of the staff metrics page (mounted at /metrics/)."""

from __future__ import annotations

from django.urls import path

from jobs.web import metrics_views, prometheus

app_name = "metrics"

urlpatterns = [
    path("", metrics_views.metrics_page, name="page"),
    path("data/", metrics_views.metrics_data, name="data"),
    path("prometheus", prometheus.prometheus, name="prometheus"),
]
