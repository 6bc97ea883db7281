"""Sending the deliveries the journal wrote: signed, through the outbound guard, retried
with backoff, a webhook switched off after repeated failures.

Where they are sent from, and why: the journal writes pending `WebhookDelivery` rows in
the transaction that ends a job (durable: they commit with the job's end or not at
all), and the upkeep (`upkeep`, run at every worker's heartbeat) starts one sender
thread in that worker process when some are due. Not from the worker that ended the job
(a slow receiver would hold its next job), not from the heartbeat thread itself (it
renews leases: a receiver that takes 10 s must not make jobs look lost), and not as a
job kind of its own (a job per delivery would fill users' job lists, counters and
metrics, and take caps and turns from their work). Rows are claimed with a
compare-and-set of `claimed_until`, so two workers never send one delivery at once and a
sender that died leaves claims that expire.

Each POST carries `Conveyor-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`
(Stripe's scheme): a receiver recomputes it with its secret and refuses old `t`s. A
2xx is delivered; anything else (3xx included: redirects are not followed) is a failed
attempt, tried again after CONVEYOR_WEBHOOK_RETRY_BASE_SECONDS x 3^(attempt-1) until
CONVEYOR_WEBHOOK_ATTEMPTS; a delivery given up counts against its webhook, and
CONVEYOR_WEBHOOK_DISABLE_AFTER of them in a row switch it off, its owner notified.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from jobs.engine import secrets
from jobs.models import Batch, Job, Notification, Webhook, WebhookDelivery
from jobs.outbound import OutboundRefused, guarded_client
from jobs.selectors import batch_progress
from jobs.serializers import batch_as_dict, job_as_dict, schedule_as_dict

log = logging.getLogger(__name__)

Status = WebhookDelivery.Status
CLAIM = 10  # deliveries a sender claims at once
PRUNE_EVERY = 600.0  # seconds between two prunes of the delivery log in one process
TEST_EVENT = "webhook.test"


def signature(secret: str, body: str, at: int) -> str:
    """The `Conveyor-Signature` header's value for `body` sent at unix time `at`."""
    digest = hmac.new(secret.encode(), f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def payload(delivery: WebhookDelivery) -> dict[str, Any]:
    """The JSON of a delivery: the job's (or batch's) API JSON as it is now."""
    data: dict[str, Any] = {"event": delivery.event}
    if delivery.job_id is not None:
        job = Job.objects.select_related("owner", "schedule").filter(pk=delivery.job_id).first()
        data["job"] = job_as_dict(job, detail=True) if job else {"id": delivery.job_id}
        if delivery.event == "schedule.failed" and job is not None and job.schedule is not None:
            data["schedule"] = schedule_as_dict(job.schedule)
    if delivery.batch_id is not None:
        batch = Batch.objects.filter(pk=delivery.batch_id).first()
        if batch is None:
            data["batch"] = {"id": delivery.batch_id}
        else:
            progress = batch_progress(batch)
            data["batch"] = batch_as_dict(batch, progress.jobs, progress.percent)
    if delivery.event == TEST_EVENT:
        data["webhook"] = {"id": delivery.webhook_id, "url": delivery.webhook.url}
    data["sent_at"] = _iso(timezone.now())
    return data


async def _post(url: str, body: str, headers: dict[str, str]) -> int:
    timeout = settings.CONVEYOR_WEBHOOK_TIMEOUT_SECONDS
    client = guarded_client(
        allow_private=settings.CONVEYOR_WEB_ALLOW_PRIVATE,
        allowed_networks=settings.CONVEYOR_WEB_ALLOWED_NETWORKS,
        connections=1,
        timeout=timeout,
    )
    async with client:
        async with asyncio.timeout(timeout * 2):
            response = await client.post(url, content=body.encode(), headers=headers)
    return response.status_code


def post(webhook: Webhook, delivery: WebhookDelivery, body: str) -> tuple[int | None, str]:
    """POST the body, signed; (status code, error text): error "" for a 2xx."""
    at = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Conveyor-Webhooks/1",
        "Conveyor-Event": delivery.event,
        "Conveyor-Delivery": str(delivery.pk),
        "Conveyor-Signature": signature(secrets.decrypt(webhook.secret), body, at),
    }
    import httpx  # here, not at import: a cluster's processes fork without it

    try:
        code = asyncio.run(_post(webhook.url, body, headers))
    except OutboundRefused as exc:
        return None, str(exc)
    except (TimeoutError, httpx.TimeoutException):
        return None, f"no answer within {settings.CONVEYOR_WEBHOOK_TIMEOUT_SECONDS:g} s"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    if 200 <= code < 300:
        return code, ""
    return code, f"answered HTTP {code}"


def mail(webhook: Webhook, data: dict[str, Any]) -> str:
    """E-mail the owner about the event; error text or ""."""
    owner = webhook.owner
    if owner is None or not owner.email:
        return "the account has no e-mail address"
    subject, lines = _mail_text(data)
    try:
        send_mail(subject, "\n".join(lines), None, [owner.email])
    except Exception as exc:  # noqa: BLE001 - any mail backend's failure is a failed attempt
        return f"could not send the e-mail: {type(exc).__name__}: {exc}"[:500]
    return ""


def _mail_text(data: dict[str, Any]) -> tuple[str, list[str]]:
    site = settings.CONVEYOR_SITE_URL.rstrip("/")
    event = data["event"]
    if "job" in data:
        job = data["job"]
        title = job.get("title") or f"Job #{job['id']}"
        verb = {"schedule.failed": "failed (scheduled run)"}.get(event, job.get("status", ""))
        subject = f"[Conveyor] {title} {verb}"
        lines = [f"{title} {verb}.", ""]
        if job.get("error"):
            lines += [f"Error: {job['error']}", ""]
        if job.get("url"):
            lines.append(f"{site}{job['url']}")
        return subject, lines
    if "batch" in data:
        batch = data["batch"]
        title = batch.get("title") or f"Batch #{batch['id']}"
        counts = Counter(job["status"] for job in batch.get("jobs", []))
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no jobs"
        url = reverse("jobs:batch", args=[batch["id"]])
        return f"[Conveyor] {title} finished", [f"{title} finished: {summary}.", "", site + url]
    return "[Conveyor] test notice", ["This is a test notice from Conveyor."]


def deliver(delivery: WebhookDelivery) -> WebhookDelivery:
    """One attempt at a claimed delivery, its outcome recorded."""
    webhook = delivery.webhook
    if not webhook.active:
        return _record(delivery, None, "the webhook is disabled", final=True)
    if not delivery.body:
        delivery.body = json.dumps(payload(delivery), separators=(",", ":"), default=str)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(body=delivery.body)
    if webhook.channel == Webhook.Channel.EMAIL:
        return _record(delivery, None, mail(webhook, json.loads(delivery.body)))
    code, error = post(webhook, delivery, delivery.body)
    return _record(delivery, code, error, final=delivery.event == TEST_EVENT)


def _backoff(attempt: int) -> float:
    return settings.CONVEYOR_WEBHOOK_RETRY_BASE_SECONDS * 3 ** (attempt - 1)


def _record(
    delivery: WebhookDelivery, code: int | None, error: str, *, final: bool = False
) -> WebhookDelivery:
    now = timezone.now()
    delivery.attempts += 1
    delivery.attempted_at, delivery.response_code, delivery.error = now, code, error[:500]
    delivery.claimed_until = None
    if not error:
        delivery.status = Status.SENT
        Webhook.objects.filter(pk=delivery.webhook_id).update(failures=0)
    elif final or delivery.attempts >= settings.CONVEYOR_WEBHOOK_ATTEMPTS:
        delivery.status = Status.FAILED
        if delivery.event != TEST_EVENT:  # a test is tried once and counts for nothing
            _count_failure(delivery.webhook, error)
    else:
        delivery.next_attempt_at = now + timedelta(seconds=_backoff(delivery.attempts))
    fields = ["attempts", "attempted_at", "response_code", "error", "claimed_until", "status"]
    delivery.save(update_fields=[*fields, "next_attempt_at"])
    return delivery


def _count_failure(webhook: Webhook, error: str) -> None:
    """A delivery given up: one more failure in a row; at the limit the webhook is
    switched off (once: the UPDATE that does it is the one that notifies)."""
    if not webhook.active:
        return
    Webhook.objects.filter(pk=webhook.pk).update(failures=F("failures") + 1)
    limit = settings.CONVEYOR_WEBHOOK_DISABLE_AFTER
    reason = f"Disabled after {limit} failed deliveries in a row (last: {error})"[:300]
    switched = Webhook.objects.filter(pk=webhook.pk, active=True, failures__gte=limit).update(
        active=False, disabled_reason=reason
    )
    if switched and webhook.owner_id:
        where = webhook.url if webhook.channel == Webhook.Channel.WEBHOOK else "E-mail notices"
        Notification.objects.create(
            user_id=webhook.owner_id,
            level=Notification.Level.ERROR,
            message=f"Webhook {where}: {reason}"[:500],
            url=reverse("jobs:webhooks"),
        )


def due() -> Any:
    now = timezone.now()
    return WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=now).filter(
        Q(claimed_until=None) | Q(claimed_until__lt=now)
    )


def claim_due(count: int = CLAIM) -> list[WebhookDelivery]:
    """Up to `count` due deliveries, each taken with a compare-and-set of its claim."""
    lease = timedelta(seconds=settings.CONVEYOR_WEBHOOK_TIMEOUT_SECONDS * 3 + 30)
    taken = []
    for delivery_id in due().order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:count]:
        until = timezone.now() + lease
        if due().filter(pk=delivery_id).update(claimed_until=until):
            taken.append(delivery_id)
    return list(WebhookDelivery.objects.filter(pk__in=taken).select_related("webhook__owner"))


def send_due() -> int:
    """Claim and send due deliveries until none is due; how many attempts were made."""
    tried = 0
    while claimed := claim_due():
        for delivery in claimed:
            try:
                deliver(delivery)
            except Exception:  # noqa: BLE001 - one bad delivery must not stop the rest
                log.exception("webhook delivery %s failed", delivery.pk)
                _record(delivery, None, "internal error while sending")
            tried += 1
    return tried


class TooManyTests(Exception):
    """More test deliveries than CONVEYOR_WEBHOOK_TESTS_PER_MINUTE: `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"At most {settings.CONVEYOR_WEBHOOK_TESTS_PER_MINUTE} test deliveries a minute: "
            f"try again in {retry_after} s."
        )
        self.retry_after = retry_after


def send_test(webhook: Webhook) -> WebhookDelivery:
    """A `webhook.test` delivery sent now (in the caller's request), its outcome logged:
    tried once, not retried, not counted against the webhook if it fails. At most
    CONVEYOR_WEBHOOK_TESTS_PER_MINUTE a minute per owner (TooManyTests): each is a
    request to an address the user chose, sent by the server."""
    since = timezone.now() - timedelta(minutes=1)
    recent = WebhookDelivery.objects.filter(
        event=TEST_EVENT, webhook__owner=webhook.owner, created_at__gte=since
    ).order_by("created_at")
    limit = settings.CONVEYOR_WEBHOOK_TESTS_PER_MINUTE
    if len(times := list(recent.values_list("created_at", flat=True)[:limit])) >= limit:
        raise TooManyTests(max(1, int((times[0] - since).total_seconds()) + 1))
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        event=TEST_EVENT,
        claimed_until=timezone.now() + timedelta(minutes=1),
    )
    delivery.webhook = webhook
    return deliver(delivery)


def prune(days: int | None = None) -> int:
    """Delete deliveries that ended (sent or given up) more than `days` ago."""
    days = settings.CONVEYOR_WEBHOOK_KEEP_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    old = WebhookDelivery.objects.exclude(status=Status.PENDING).filter(created_at__lt=cutoff)
    deleted, _ = old.delete()
    return deleted


class _Sender:
    thread: threading.Thread | None = None
    lock = threading.Lock()
    pruned_at = 0.0


def _send_in_thread() -> None:
    try:
        send_due()
    except Exception:  # noqa: BLE001 - the next upkeep starts another sender
        log.exception("webhook sender failed")
    finally:
        close_old_connections()
        connection.close()


def upkeep() -> None:
    """The upkeep hook: start this process's sender when deliveries are due (one thread a
    process; it ends when none is left), and prune the log now and then. A failure is
    logged, never raised into the heartbeat (the hooks after this one still run)."""
    try:
        _upkeep()
    except Exception:  # noqa: BLE001 - the next beat tries again
        log.exception("webhook upkeep failed")


def _upkeep() -> None:
    now = time.monotonic()
    if now - _Sender.pruned_at > PRUNE_EVERY:
        _Sender.pruned_at = now
        prune()
    with _Sender.lock:
        if _Sender.thread is not None and _Sender.thread.is_alive():
            return
        if not due().exists():
            return
        _Sender.thread = threading.Thread(
            target=_send_in_thread, name="conveyor-webhooks", daemon=True
        )
        _Sender.thread.start()
