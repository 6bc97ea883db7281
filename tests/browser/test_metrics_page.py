"""The staff metrics page draws its charts and updates them while jobs run."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.browser.conftest import wait_for_js
from tests.jobs.factories import submit_demo
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

SUCCEEDED_ON_CHART = """() => {
  const chart = window.conveyorMetrics && window.conveyorMetrics.charts.jobs;
  if (!chart) return -1;
  const index = chart.series.findIndex((s) => s.label === 'Succeeded');
  return chart.data[index].reduce((sum, v) => sum + (v || 0), 0);
}"""
ROWS_ON_CHART = """() => {
  const chart = window.conveyorMetrics && window.conveyorMetrics.charts.rows;
  return chart ? chart.data[1].reduce((sum, v) => sum + (v || 0), 0) : -1;
}"""


def test_a_chart_updates_when_jobs_finish(cluster, open_page, staff_user):
    page = open_page(staff_user, "/metrics/?every=1")
    wait_for_js(page, "window.conveyorMetrics && window.conveyorMetrics.updates >= 1")
    assert (page.evaluate(SUCCEEDED_ON_CHART), page.evaluate(ROWS_ON_CHART)) == (0, 0)
    assert page.locator("#chart-jobs canvas").count() == 1, "uPlot drew the chart"

    jobs = [submit_demo(staff_user, n=5) for _ in range(3)]
    wait_for(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count() == 3,
        timeout=30,
        what="the three jobs to succeed",
    )
    wait_for_js(page, f"({SUCCEEDED_ON_CHART})() === 3 && ({ROWS_ON_CHART})() === 15")
    wait_for_js(page, "document.querySelector('[data-figure=workers]').textContent.trim() === '2'")
    assert page.evaluate("window.conveyorMetrics.errors") == 0
