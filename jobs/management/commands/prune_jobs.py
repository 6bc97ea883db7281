"""`manage.py prune_jobs [--days N] [--dry-run]`: the retention sweep, on demand.

The periodic schedule (jobs.engine.maintenance.run_periodic) runs the same sweep every
minute with CONVEYOR_RETENTION_DAYS; this command lets an operator run it now, with
another age, or just count what it would delete.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.engine.maintenance import prunable_jobs, prune_finished_jobs


class Command(BaseCommand):
    help = (
        "Delete finished jobs (with their events, row results and notifications) that "
        "finished more than CONVEYOR_RETENTION_DAYS (or --days) days ago."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Age in days instead of CONVEYOR_RETENTION_DAYS (0: every finished job).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count the jobs that would be deleted."
        )

    def handle(self, *args, days: int | None, dry_run: bool, **options) -> None:
        if days is not None and days < 0:
            raise CommandError("--days must be 0 or more.")
        if days is None and settings.CONVEYOR_RETENTION_DAYS <= 0:
            self.stdout.write(
                "Retention is off (CONVEYOR_RETENTION_DAYS <= 0): nothing pruned. "
                "Pass --days N to prune anyway."
            )
            return
        age = _plural(settings.CONVEYOR_RETENTION_DAYS if days is None else days, "day")
        if dry_run:
            count = prunable_jobs(days).count()
            self.stdout.write(f"Would delete {_plural(count, 'job')} finished more than {age} ago.")
            return
        count = prune_finished_jobs(days)
        self.stdout.write(f"Deleted {_plural(count, 'job')} finished more than {age} ago.")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
