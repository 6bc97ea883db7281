"""What users do with their webhooks and e-mail notices: every front end (API, CLI, the
settings page) goes through here, so a URL, an event list, the outbound guard and the
per-user ceiling are checked once.

A webhook's signing secret is made here, returned once by `webhook_create` and stored
sealed (`jobs.engine.secrets`): no later read shows it. A webhook without an owner is the
operator's (staff only): it gets every user's events.
"""

from __future__ import annotations

import ipaddress
import secrets as random
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import QuerySet

from jobs.engine import secrets
from jobs.engine.journal import hooks_changed
from jobs.models import Webhook, WebhookDelivery
from jobs.notice_models import EVENTS
from jobs.outbound import AddressGuard

MAX_URL = 2000


class WebhookInvalid(Exception):
    """Input a webhook cannot be made from: `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {text}" for field, text in errors.items()))
        self.errors = errors


def parse_events(events: Any) -> list[str]:
    """A list (or "a,b" text) of known event names, or WebhookInvalid."""
    if isinstance(events, str):
        events = [event.strip() for event in events.split(",") if event.strip()]
    if not isinstance(events, list) or not events:
        raise WebhookInvalid({"events": f"give a list of events: {', '.join(EVENTS)}"})
    unknown = [str(event) for event in events if event not in EVENTS]
    if unknown:
        raise WebhookInvalid(
            {"events": f"unknown event {', '.join(unknown)}; known: {', '.join(EVENTS)}"}
        )
    return sorted(set(events), key=EVENTS.index)


def guard() -> AddressGuard:
    """The outbound guard as the operator set it (loopback and private networks only
    where CONVEYOR_WEB_ALLOW_PRIVATE or CONVEYOR_WEB_ALLOWED_NETWORKS allow them)."""
    return AddressGuard(settings.CONVEYOR_WEB_ALLOW_PRIVATE, settings.CONVEYOR_WEB_ALLOWED_NETWORKS)


def check_url(url: Any) -> str:
    """An http(s) URL whose host resolves to addresses the outbound guard allows (checked
    again at every delivery: a name may resolve elsewhere later)."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookInvalid({"url": "give the URL to call (https://...)"})
    url = url.strip()
    if len(url) > MAX_URL:
        raise WebhookInvalid({"url": f"at most {MAX_URL} characters"})
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookInvalid({"url": "not a valid URL"}) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookInvalid({"url": "an http:// or https:// URL with a host"})
    if parts.username or parts.password:
        raise WebhookInvalid({"url": "no user or password in the URL (sign with the secret)"})
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookInvalid({"url": f"unknown host {host}"}) from None
    check = guard()
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if reason := check.why_not(host, address):
            raise WebhookInvalid({"url": reason})
    return url


def webhooks_of(user: Any) -> QuerySet[Webhook]:
    """The webhooks `user` may see and manage: theirs, and for staff the operator's."""
    hooks = Webhook.objects.filter(channel=Webhook.Channel.WEBHOOK)
    if user.is_staff:
        return hooks.filter(owner=user) | hooks.filter(owner=None)
    return hooks.filter(owner=user)


def webhook_create(
    owner: Any, url: Any, events: Any, *, for_everyone: bool = False
) -> tuple[Webhook, str]:
    """A new active webhook and its signing secret (the one time it is shown).
    `for_everyone`: the operator's (staff only), called for every user's jobs."""
    errors: dict[str, str] = {}
    try:
        url = check_url(url)
    except WebhookInvalid as exc:
        errors.update(exc.errors)
    try:
        events = parse_events(events)
    except WebhookInvalid as exc:
        errors.update(exc.errors)
    if for_everyone and not owner.is_staff:
        errors["global"] = "only staff may add a webhook for every user's jobs"
    ceiling = settings.CONVEYOR_WEBHOOK_MAX_PER_USER
    if Webhook.objects.filter(owner=None if for_everyone else owner).count() >= ceiling:
        errors["url"] = f"at most {ceiling} webhooks each (delete one first)"
    if errors:
        raise WebhookInvalid(errors)
    secret = "whsec_" + random.token_urlsafe(32)
    webhook = Webhook.objects.create(
        owner=None if for_everyone else owner,
        url=url,
        events=Webhook.stored_events(events),
        secret=secrets.encrypt(secret),
    )
    hooks_changed()
    return webhook, secret


def webhook_delete(webhook: Webhook) -> None:
    webhook.delete()


def webhook_enable(webhook: Webhook) -> None:
    """Switch a disabled webhook back on, its failure count reset."""
    Webhook.objects.filter(pk=webhook.pk).update(active=True, failures=0, disabled_reason="")
    hooks_changed()


def signing_secret(webhook: Webhook) -> str:
    return secrets.decrypt(webhook.secret)


def deliveries_of(webhook: Webhook, limit: int = 50) -> list[WebhookDelivery]:
    limit = max(1, min(limit, settings.CONVEYOR_WEBHOOK_LOG_LIMIT))
    return list(webhook.deliveries.order_by("-id")[:limit])


def email_notices_of(user: Any) -> list[str]:
    """The events `user` gets e-mail for ([] when none)."""
    hook = Webhook.objects.filter(owner=user, channel=Webhook.Channel.EMAIL).first()
    return hook.event_list if hook is not None and hook.active else []


def email_notices_set(user: Any, events: Any) -> list[str]:
    """Opt into e-mail (to the account's address) for `events`; none (`[]`, `""` or
    absent): opt out. Anything else that is not events (`{}`, `0`) is refused, not
    taken for "none"."""
    chosen = [] if events is None or events in ([], "") else parse_events(events)
    if chosen and not user.email:
        raise WebhookInvalid({"email": "your account has no e-mail address"})
    Webhook.objects.filter(owner=user, channel=Webhook.Channel.EMAIL).delete()
    if chosen:
        Webhook.objects.create(
            owner=user, channel=Webhook.Channel.EMAIL, events=Webhook.stored_events(chosen)
        )
        hooks_changed()
    return chosen
