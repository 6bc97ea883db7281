"""The settings page of out-of-app notices, /jobs/webhooks/: the user's webhooks (add,
test, enable, delete; the signing secret shown once, on the page that answers the add),
each webhook's delivery log, and e-mail notices (which events, to the account's
address). Every change goes through `jobs.notices.services`; forms are Django forms.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.models import Webhook
from jobs.notice_models import EVENTS
from jobs.notices import delivery as sending
from jobs.notices import services

EVENT_CHOICES = [(event, event) for event in EVENTS]


class WebhookForm(forms.Form):
    url = forms.CharField(label="URL", max_length=services.MAX_URL, strip=True)
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple, initial=["job.failed"]
    )
    everyone = forms.BooleanField(label="For every user's jobs (operator)", required=False)


class EmailForm(forms.Form):
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple, required=False
    )


def _page(request: HttpRequest, form=None, email_form=None, secret: str = "", status=200):
    context = {
        "webhooks": services.webhooks_of(request.user).order_by("pk"),
        "form": form or WebhookForm(),
        "email_form": email_form
        or EmailForm(initial={"events": services.email_notices_of(request.user)}),
        "secret": secret,
        "ceiling": settings.CONVEYOR_WEBHOOK_MAX_PER_USER,
    }
    return render(request, "jobs/webhooks.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def webhooks(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: add a webhook; the answer shows its secret, once."""
    if request.method == "GET":
        return _page(request)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    try:
        webhook, secret = services.webhook_create(
            request.user,
            form.cleaned_data["url"],
            form.cleaned_data["events"],
            for_everyone=form.cleaned_data["everyone"],
        )
    except services.WebhookInvalid as exc:
        for field, text in exc.errors.items():
            form.add_error(field if field in form.fields else None, text)
        return _page(request, form=form, status=400)
    messages.success(request, f"Webhook {webhook.url} added.")
    return _page(request, secret=secret)


def _visible(request: HttpRequest, webhook_id: int) -> Webhook:
    return get_object_or_404(services.webhooks_of(request.user), pk=webhook_id)


@login_required
@require_GET
def webhook_detail(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = _visible(request, webhook_id)
    limit = settings.CONVEYOR_WEBHOOK_LOG_LIMIT
    context = {"webhook": webhook, "deliveries": services.deliveries_of(webhook, limit)}
    return render(request, "jobs/webhook_detail.html", context)


@login_required
@require_POST
def webhook_action(request: HttpRequest, webhook_id: int, action: str) -> HttpResponse:
    """test, enable or delete."""
    webhook = _visible(request, webhook_id)
    if action == "delete":
        services.webhook_delete(webhook)
        messages.success(request, f"Webhook {webhook.url} deleted.")
        return redirect("jobs:webhooks")
    if action == "enable":
        services.webhook_enable(webhook)
        messages.success(request, f"Webhook {webhook.url} enabled.")
    elif action == "test":
        if not webhook.active:
            messages.error(request, "The webhook is disabled; enable it first.")
            return redirect("jobs:webhook", webhook.pk)
        try:
            sent = sending.send_test(webhook)
        except sending.TooManyTests as exc:
            messages.error(request, str(exc))
            return redirect("jobs:webhook", webhook.pk)
        if sent.error:
            messages.error(request, f"Test delivery failed: {sent.error}")
        else:
            messages.success(request, f"Test delivered (HTTP {sent.response_code}).")
    else:
        messages.error(request, f"No webhook action {action!r}.")
    return redirect("jobs:webhook", webhook.pk)


@login_required
@require_POST
def email_notices(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST)
    if not form.is_valid():
        return _page(request, email_form=form, status=400)
    try:
        chosen = services.email_notices_set(request.user, form.cleaned_data["events"])
    except services.WebhookInvalid as exc:
        form.add_error(None, "; ".join(exc.errors.values()))
        return _page(request, email_form=form, status=400)
    if chosen:
        messages.success(request, f"E-mail to {request.user.email} for {', '.join(chosen)}.")
    else:
        messages.success(request, "No e-mail notices.")
    return redirect("jobs:webhooks")
