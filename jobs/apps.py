"""App config for the jobs engine: connects the worker-process hooks and the demo kind."""

from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import demo, worker  # noqa: F401  (registers the demo kind and hooks)
