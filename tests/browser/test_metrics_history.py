"""The metrics page over a week: the per-kind table shows what the history holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.history.rollup import roll_up
from jobs.models import HistoryMark, Job
from tests.browser.conftest import wait_for_js
from tests.jobs.factories import submit_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_week_shows_each_kinds_run_time_and_wait(open_page, staff_user):
    now = timezone.now()
    HistoryMark.objects.create(rolled_to=now - timedelta(days=2))
    for status in ("succeeded", "succeeded", "failed"):
        job = submit_demo(staff_user, n=1)
        ended = now - timedelta(days=1)
        Job.objects.filter(pk=job.pk).update(
            status=status,
            created_at=ended - timedelta(seconds=10),
            started_at=ended - timedelta(seconds=4),
            finished_at=ended,
            run_seconds=4,
            processed=5,
        )
    roll_up(now)
    page = open_page(staff_user, "/metrics/?window=week")
    wait_for_js(page, "window.conveyorMetrics && window.conveyorMetrics.updates >= 1")
    row = page.locator('#kind-performance tr[data-kind="demo.count"] td')
    cells = [row.nth(i).inner_text() for i in range(row.count())]
    assert cells[:4] == ["demo.count", "3", "0", "33.3 %"]
    assert cells[4] == "3.8 s / 4.9 s" and cells[6] == "15 (0)", cells
    assert page.locator("#chart-jobs canvas").count() == 1
