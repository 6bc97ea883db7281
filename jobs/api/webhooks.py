"""The webhooks part of the JSON API: `/api/webhooks/` (list; create: the answer holds
the signing secret, the one time it is shown), `/api/webhooks/<id>/` (read, DELETE),
`POST /api/webhooks/<id>/test/` (a `webhook.test` delivery sent now, its outcome in the
answer), `GET /api/webhooks/<id>/deliveries/` (the delivery log, newest first) and
`/api/notices/email/` (GET, PUT {"events": [...]}: the caller's e-mail notices).

Same conventions as `jobs.api.views`: 400 with `fields` for bad input (a URL the
outbound guard refuses, an unknown event, one webhook too many), another user's
webhook a 404. Changes go through `jobs.notices.services`.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from jobs.api import schemas as s
from jobs.api.input import (
    ApiError,
    found_or_404,
    json_object,
    only_fields,
    parsed,
    query,
    query_int,
    validated,
)
from jobs.api.openapi import operation
from jobs.api.schemas import fields_of
from jobs.api.views import _no_body, api_view
from jobs.models import Webhook
from jobs.notices import delivery as sending
from jobs.notices import services
from jobs.serializers import delivery_as_dict, webhook_as_dict


def _invalid(exc: services.WebhookInvalid) -> ApiError:
    return ApiError(400, f"Invalid webhook: {exc}", exc.errors)


def visible_webhook(request: HttpRequest, webhook_id: str) -> Webhook:
    return found_or_404(services.webhooks_of(request.user), webhook_id, "Webhook")


@api_view("GET", "POST")
@operation("GET", "Your webhooks", s.WebhookList)
@operation(
    "POST",
    "Create a webhook",
    s.WebhookCreated,
    status=201,
    body=s.WebhookCreate,
    description="The answer holds the signing `secret`, the one time it is shown.",
)
def webhooks(request: HttpRequest) -> HttpResponse:
    """GET: the caller's webhooks (staff: and the operator's). POST: {"url", "events",
    "global"?} → 201 with `secret`."""
    if request.method == "GET":
        query(request, set())
        rows = services.webhooks_of(request.user).order_by("pk")
        return JsonResponse({"results": [webhook_as_dict(hook) for hook in rows]})
    data = json_object(request)
    only_fields(data, fields_of(s.WebhookCreate))
    given = _checked_create(data)
    try:  # then what no type says: the outbound guard, at least one event, the ceiling
        webhook, secret = services.webhook_create(
            request.user, given["url"], given["events"], for_everyone=bool(given["global"])
        )
    except services.WebhookInvalid as exc:
        raise _invalid(exc) from None
    response = JsonResponse({**webhook_as_dict(webhook), "secret": secret}, status=201)
    response["Location"] = reverse("api:webhook", args=[webhook.pk])
    return response


def _checked_create(data: dict[str, Any]) -> dict[str, Any]:
    """The body checked by its model; when that fails, a URL that passed it is checked
    by the outbound guard too, so that every bad field is reported at once."""
    given, errors = validated(s.WebhookCreate, data)
    if errors and "url" not in errors:
        try:
            services.check_url(given.get("url"))
        except services.WebhookInvalid as exc:
            errors.update(exc.errors)
    if errors:
        raise _invalid(services.WebhookInvalid(errors))
    return given


@api_view("GET", "DELETE")
@operation("GET", "One webhook", s.Webhook)
@operation("DELETE", "Delete a webhook", None, status=204, body=s.NoBody, body_required=False)
def webhook(request: HttpRequest, webhook_id: str) -> HttpResponse:
    found = visible_webhook(request, webhook_id)
    if request.method == "DELETE":
        _no_body(request)
        services.webhook_delete(found)
        return HttpResponse(status=204)
    query(request, set())
    return JsonResponse(webhook_as_dict(found))


@api_view("POST")
@operation(
    "POST",
    "Send a test delivery now",
    s.Delivery,
    body=s.NoBody,
    body_required=False,
    errors=(409, 429),
)
def webhook_test(request: HttpRequest, webhook_id: str) -> HttpResponse:
    """Send a `webhook.test` delivery now; 200 with how it went (the log keeps it)."""
    _no_body(request)
    found = visible_webhook(request, webhook_id)
    if not found.active:
        raise ApiError(409, "The webhook is disabled; enable it first.")
    try:
        return JsonResponse(delivery_as_dict(sending.send_test(found)))
    except sending.TooManyTests as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None


@api_view("POST")
@operation("POST", "Enable a webhook again", s.Webhook, body=s.NoBody, body_required=False)
def webhook_enable(request: HttpRequest, webhook_id: str) -> HttpResponse:
    _no_body(request)
    found = visible_webhook(request, webhook_id)
    services.webhook_enable(found)
    found.refresh_from_db()
    return JsonResponse(webhook_as_dict(found))


@api_view("GET")
@operation("GET", "A webhook's delivery log, newest first", s.DeliveryList, query=s.DeliveriesQuery)
def webhook_deliveries(request: HttpRequest, webhook_id: str) -> HttpResponse:
    """The delivery log, newest first (`?limit=`, at most CONVEYOR_WEBHOOK_LOG_LIMIT)."""
    params = query(request, fields_of(s.DeliveriesQuery))
    found = visible_webhook(request, webhook_id)
    rows = services.deliveries_of(found, query_int(params, "limit", 50))
    return JsonResponse({"results": [delivery_as_dict(row) for row in rows]})


@api_view("GET", "PUT")
@operation("GET", "The events you get e-mail for", s.EmailNoticesAnswer)
@operation("PUT", "Set the events you get e-mail for", s.EmailNoticesAnswer, body=s.EmailNotices)
def email_notices(request: HttpRequest) -> HttpResponse:
    """The events the caller gets e-mail for; PUT {"events": [...]} ([]: none)."""
    if request.method == "PUT":
        data = json_object(request)
        only_fields(data, fields_of(s.EmailNotices))
        given = parsed(s.EmailNotices, data, "e-mail notices")
        try:
            events = services.email_notices_set(request.user, given["events"])
        except services.WebhookInvalid as exc:
            raise ApiError(400, f"Invalid e-mail notices: {exc}", exc.errors) from None
        return JsonResponse({"events": events, "email": request.user.email})
    query(request, set())
    return JsonResponse(
        {"events": services.email_notices_of(request.user), "email": request.user.email}
    )
