"""Template context for every page: the running-jobs badge, unread notifications,
whether the user's jobs wait for workers that are not there, and the jobs of the user
that ended while no page of theirs was open ("… finished while you were away")."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.http import HttpRequest

from jobs import selectors
from jobs.actions.kinds import notices as kind_notices
from jobs.engine.services import notifications_take_unshown
from jobs.models import Notification

AWAY_LISTED = 5  # the coming-back notice lists this many; the rest are counted


@dataclass(frozen=True)
class AwayLine:
    """One line of the notice: "<headline> while you were away[: <detail>]"."""

    notification: Notification
    headline: str
    detail: str


def away_line(note: Notification) -> AwayLine:
    """Split the notification's message ("Short count failed: boom") where its subject's
    outcome ends, so "while you were away" follows the outcome, not the error text."""
    subject = note.job.title if note.job else note.batch.title if note.batch else ""
    if subject and note.message.startswith(subject):
        outcome, _, detail = note.message[len(subject) :].partition(": ")
        headline = subject + outcome
    else:
        headline, _, detail = note.message.partition(": ")
    return AwayLine(note, headline.strip(), detail.strip())


def away_notices(request: HttpRequest) -> dict:
    """The notice's lines and how many more, taken (marked shown) when a page's template
    first reads them: a JSON answer, an admin page or an htmx fragment (whose page is
    already open) takes nothing."""
    notes = notifications_take_unshown(user=request.user)
    return {
        "lines": [away_line(note) for note in notes[:AWAY_LISTED]],
        "more": max(0, len(notes) - AWAY_LISTED),
    }


def live_nav(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    htmx = getattr(request, "htmx", None)
    context = {
        "nav_running_count": selectors.running_count(user.pk),
        "nav_unread_count": selectors.unread_count(user.pk),
        "workers_down": selectors.waiting_without_workers(user.pk),
        "kind_notices": kind_notices,  # operators' pauses: read only by a page that shows them
    }
    if not htmx or htmx.boosted:  # a whole page (an htmx fragment's page shows it already)
        context["away_notices"] = functools.cache(functools.partial(away_notices, request))
    return context
