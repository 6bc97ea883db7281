"""Live updates of a sheet's page: when its job commits rows, tell the page to refresh
its results table (the job's progress panel itself comes from jobs.web.live)."""

from __future__ import annotations

from collections.abc import Iterable

from jobs.models import Job
from jobs.web import live
from sheets.kinds import KIND


def results_signal(job: Job) -> Iterable[live.Fragment]:
    if job.kind != KIND or not job.owner_id or not job.entity_key:
        return []
    html = (
        f'<div id="results-signal" hx-swap-oob="true" data-job="{job.pk}" '
        f'data-processed="{job.processed}" data-status="{job.status}"></div>'
    )
    return [(live.entity_group(job.owner_id, job.entity_key), html)]


live.extra_renderers.append(results_signal)
