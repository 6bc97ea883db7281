"""A kind and a processor from an app of their own (tests/plugin_app): one file each,
found by autodiscovery, run by a real cluster, listed by the pages and the CLI."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from jobs.engine.kinds import get_kind
from jobs.engine.services import job_submit
from jobs.models import Job
from sheets.processors import get_processor
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_apps_kind_and_processor_are_registered_without_any_edit_in_jobs():
    assert get_kind("plugin.shout").label == "Shout words"
    assert get_processor("plugin.length").output_columns({}, ["a"]) == ["length"]


@pytest.mark.cluster
def test_a_real_cluster_runs_the_plugin_kind(cluster, user):
    job, created = job_submit(kind="plugin.shout", params={"words": ["a", "bc"]}, owner=user)
    assert created and job.total == 2
    wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=30, what="the job to end")
    job.refresh_from_db()
    assert (job.status, job.processed, job.result) == ("succeeded", 2, {"shouted": ["A", "BC"]})


def test_the_plugin_kind_shows_on_the_dashboard_and_in_the_cli(user, client: Client):
    job, _ = job_submit(kind="plugin.shout", params={"words": ["x"]}, owner=user)
    client.force_login(user)
    page = client.get("/jobs/?kind=plugin.shout")
    assert page.status_code == 200 and f'id="job-row-{job.pk}"' in page.content.decode()
    out = io.StringIO()
    call_command(
        "conveyor", "list", "--kind", "plugin.shout", "--json", "--user", "alice", stdout=out
    )
    assert [row["id"] for row in json.loads(out.getvalue())] == [job.pk]


def test_the_plugin_processor_runs_in_a_sheet_job(user):
    sheet = make_sheet(user, [["name"], ["Ada"], ["Grace"]])
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="plugin.length")
    job = run_to_end(job)
    assert job.status == "succeeded"
    assert sorted(r.outputs["length"] for r in job.row_results.all()) == [3, 5]
