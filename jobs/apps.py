"""App config for the jobs engine: worker-process hooks, and every app's job kinds.

Kinds are found like admin modules: each installed app's `kinds` module is imported
(`autodiscover_modules`), so a new kind is one file in its own app (`jobs/kinds.py`
holds the demo kind, `sheets/kinds.py` the sheet kinds).
"""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import tasks_backend
        from jobs.engine import maintenance, services, worker  # noqa: F401  (worker hooks)
        from jobs.history import rollup
        from jobs.notices import callbacks as notices_callbacks
        from jobs.notices import delivery as notices_delivery
        from jobs.schedules.services import run_due_schedules

        maintenance.on_upkeep(run_due_schedules)  # also connects the owner-deactivated pause
        maintenance.on_upkeep(notices_callbacks.upkeep)  # batches' on_complete jobs
        maintenance.on_upkeep(notices_delivery.upkeep)  # webhooks and e-mail (a sender thread)
        maintenance.on_upkeep(rollup.upkeep)
        maintenance.on_upkeep(services.park_held_jobs)  # a kind an operator paused

        autodiscover_modules("kinds")
        autodiscover_modules("tasks")  # Django tasks that the API and CLI may name
        tasks_backend.register_kinds()  # Django Tasks: one kind per queue
