"""Template context for every page: the running-jobs badge, unread notifications, and
whether the user's jobs wait for workers that are not there."""

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
        "workers_down": selectors.waiting_without_workers(user.pk),
    }
