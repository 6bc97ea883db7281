"""Template context for every page: the running-jobs badge and unread notifications."""

from __future__ import annotations

from django.http import HttpRequest

from jobs.models import Job, Notification


def live_nav(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "nav_running_count": Job.objects.filter(owner=user, status=Job.Status.RUNNING).count(),
        "nav_unread_count": Notification.objects.filter(user=user, read_at__isnull=True).count(),
    }
