"""Plain-dict views of jobs, events and notifications: what the JSON API returns and
what `manage.py conveyor ... --json` prints, so the two cannot drift.

Datetimes are ISO 8601 strings in UTC (or null); priority is "high" / "normal" /
"low" when it has a name, else the integer. Nothing here queries beyond the row
(callers `select_related("owner")` for lists).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from jobs.engine import controls
from jobs.engine.redact import redact
from jobs.models import (
    Batch,
    Job,
    JobEvent,
    Notification,
    Priority,
    Schedule,
    Webhook,
    WebhookDelivery,
)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


WAITING_REASONS = {
    "kind_paused": "its kind or processor is paused by an operator",
    "paused": "paused",
    "dependencies": "waits for the jobs it runs after",
    "scheduled": "scheduled for later",
    "retry": "waits to retry",
}


def waiting_of(job: Job) -> tuple[str, datetime | None, str]:
    """Why an active job is not running, when it will run, and the words for a page:
    ("kind_paused", None, "llm paused by ops since 14:02 UTC: ..."), ("scheduled",
    run_after, ...), ("retry", run_after, ...), ("dependencies", None, ...), ("paused",
    None, ...), or ("", None, "") (running, or queued for the next free worker). Reads
    the operators' holds from their cached read (`controls.paused`), no query."""
    if not job.is_active or (job.status == Job.Status.RUNNING and job.lease_owner):
        return "", None, ""
    held = controls.paused()
    for name in (job.kind, job.subkind):
        if name and name in held:
            return "kind_paused", None, controls.describe(held[name])
    if job.status == Job.Status.PAUSED:
        return "paused", None, WAITING_REASONS["paused"]
    if job.upstream_pending:
        return "dependencies", None, WAITING_REASONS["dependencies"]
    if job.run_after is not None and job.run_after > timezone.now():
        reason = "retry" if job.status == Job.Status.RETRYING else "scheduled"
        return reason, job.run_after, WAITING_REASONS[reason]
    return "", None, ""


def priority_as_json(value: int) -> str | int:
    try:
        return Priority(value).label
    except ValueError:
        return value


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def job_as_dict(job: Job, *, detail: bool = False, viewer: Any = None) -> dict[str, Any]:
    """The job's public state; `detail=True` adds params, result, running budget and,
    for its owner and staff (`viewer`), the traceback of its error (secrets masked when
    it was stored). `run_after`: not started before then; `next_retry_at`: when a job
    waiting for a retry is tried again (its `run_after`)."""
    data: dict[str, Any] = {
        "id": job.pk,
        "kind": job.kind,
        "label": job.label,
        "title": job.title,
        "owner": job.owner.get_username() if job.owner_id else None,
        "status": job.status,
        "active": job.is_active,
        "requested": job.requested,
        "priority": priority_as_json(job.priority),
        "total": job.total,
        "processed": job.processed,
        "failed": job.failed,
        "percent": job.percent,
        "message": job.message,
        "error": job.error,
        "rate": _rounded(job.rate, 3),
        "eta_seconds": _rounded(job.eta_seconds, 1),
        "attempts": job.attempts,
        "cpu_seconds": round(job.cpu_seconds, 3),
        "peak_rss_mb": job.peak_rss_mb,
        "spent": job.spent or {},
        "entity_key": job.entity_key,
        "session_key": job.session_key,
        "url": job.get_absolute_url(),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "cancelled_at": iso(job.cancelled_at),
        "run_after": iso(job.run_after),
        "next_retry_at": iso(job.run_after) if job.status == Job.Status.RETRYING else None,
        "schedule": job.schedule_id,
        "scheduled_for": iso(job.scheduled_for),
        "batch": job.batch_id,
    }
    reason, next_run_at, _ = waiting_of(job)
    data.update(next_run_at=iso(next_run_at), waiting_reason=reason)
    data.update(_dependencies(job))
    if isinstance(job.result, dict) and "reused" in job.result:
        data["reused"] = job.result["reused"]  # units answered from earlier results
    if detail:
        data.update(
            params=redact(job.params),
            result=job.result,
            time_limit=job.time_limit,
            run_seconds=round(job.run_seconds, 3),
            max_attempts=job.max_attempts,
            traceback=job.traceback if _may_see_traceback(viewer, job) else None,
        )
    return data


def _may_see_traceback(viewer: Any, job: Job) -> bool:
    """A traceback names the server's code and files: its owner's and staff's to read."""
    if viewer is None or not getattr(viewer, "is_authenticated", False):
        return False
    return bool(viewer.is_staff) or viewer.pk == job.owner_id


def _dependencies(job: Job) -> dict[str, list[int]]:
    """The jobs it waits for: all of them, and those that have not succeeded yet
    (from `upstream_links`, prefetched by `selectors.visible_jobs` for lists)."""
    links = list(job.upstream_links.all())
    return {
        "depends_on": [link.depends_on_id for link in links],
        "waiting_for": [
            link.depends_on_id for link in links if link.depends_on.status != Job.Status.SUCCEEDED
        ],
    }


def event_as_dict(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "at": iso(event.at),
        "kind": event.kind,
        "status": event.status,
        "message": event.message,
        "data": event.data,
    }


def notification_as_dict(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "level": notification.level,
        "message": notification.message,
        "url": notification.url,
        "job_id": notification.job_id,
        "batch_id": notification.batch_id,
        "created_at": iso(notification.created_at),
        "read_at": iso(notification.read_at),
        "read": notification.read_at is not None,
    }


def schedule_as_dict(schedule: Schedule) -> dict[str, Any]:
    """A schedule and how its last run went (callers `select_related("owner",
    "last_job")` for lists); `every` is in seconds, secrets in `params` masked."""
    last_job = schedule.last_job
    return {
        "id": schedule.pk,
        "name": schedule.name,
        "title": schedule.title,
        "owner": schedule.owner.get_username() if schedule.owner_id else None,
        "kind": schedule.kind,
        "params": redact(schedule.params),
        "priority": priority_as_json(schedule.priority),
        "cron": schedule.cron or None,
        "every": schedule.every_seconds,
        "timezone": schedule.timezone,
        "when": schedule.when,
        "overlap": schedule.overlap,
        "enabled": schedule.enabled,
        "paused_reason": schedule.paused_reason,
        "next_run_at": iso(schedule.next_run_at),
        "last_run_at": iso(schedule.last_run_at),
        "last_job": last_job.pk if last_job else None,
        "last_job_status": last_job.status if last_job else None,
        "run_count": schedule.run_count,
        "last_skipped_at": iso(schedule.last_skipped_at),
        "skipped_count": schedule.skipped_count,
        "last_error": schedule.last_error,
        "created_at": iso(schedule.created_at),
        "updated_at": iso(schedule.updated_at),
    }


def batch_as_dict(batch: Batch, jobs: list[Job], percent: int) -> dict[str, Any]:
    """A batch with its one progress and its jobs' ids and statuses (from
    `selectors.batch_progress`, which reads them in one query)."""
    return {
        "id": batch.pk,
        "label": batch.label,
        "title": batch.title,
        "owner": batch.owner.get_username() if batch.owner_id else None,
        "job_count": batch.job_count,
        "unfinished": batch.unfinished,
        "finished": batch.is_finished,
        "percent": percent,
        "jobs": [{"id": job.pk, "status": job.status, "percent": job.percent} for job in jobs],
        "url": batch.get_absolute_url(),
        "created_at": iso(batch.created_at),
        "finished_at": iso(batch.finished_at),
    }


# -- webhooks ---------------------------------------------------------------------------


def webhook_as_dict(webhook: Webhook) -> dict[str, Any]:
    """A webhook without its secret (never shown after creation)."""
    return {
        "id": webhook.pk,
        "url": webhook.url,
        "events": webhook.event_list,
        "global": webhook.owner_id is None,
        "active": webhook.active,
        "failures": webhook.failures,
        "disabled_reason": webhook.disabled_reason,
        "created_at": iso(webhook.created_at),
    }


def delivery_as_dict(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "event": delivery.event,
        "job": delivery.job_id,
        "batch": delivery.batch_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_code": delivery.response_code,
        "error": delivery.error,
        "created_at": iso(delivery.created_at),
        "attempted_at": iso(delivery.attempted_at),
        "next_attempt_at": (
            iso(delivery.next_attempt_at)
            if delivery.status == WebhookDelivery.Status.PENDING
            else None
        ),
    }
