"""Template context for every page: the running-jobs badge and unread notifications."""

from __future__ import annotations

from django.http import HttpRequest

from jobs import selectors


def live_nav(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "nav_running_count": selectors.running_count(user.pk),
        "nav_unread_count": selectors.unread_count(user.pk),
    }
