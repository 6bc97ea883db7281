"""Jobs that wait for others (`after`): a dependent job starts only after its upstream
succeeded, is cancelled (with the reason) when one fails or is cancelled, and shows
its pipeline in the API, the page and the admin; `after_any` (and the CLI's
`--after-any`) waits for its upstream to end, whatever the outcome."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from jobs.cli.base import EXIT_BAD_INPUT
from jobs.engine.errors import JobActionError
from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_cancel, job_retry, job_submit
from jobs.models import Job
from tests.jobs.cli.test_verbs import conveyor
from tests.jobs.factories import fresh, run_to_end, submit_demo
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
S = Job.Status


def after(owner, *upstream: Job, **params) -> Job:
    job, _ = job_submit(
        kind="demo.count", params={"n": 2, **params}, owner=owner, after=[j.pk for j in upstream]
    )
    return job


@pytest.mark.cluster
def test_a_dependent_job_starts_only_after_its_upstream_succeeded(cluster, user):
    first = submit_demo(user, n=10, delay=0.05)
    second = submit_demo(user, n=5, delay=0.05)
    last = after(user, first, second)
    wait_for(lambda: fresh(last).status == S.SUCCEEDED, timeout=60, what="the dependent job")
    first, second, last = fresh(first), fresh(second), fresh(last)
    assert last.started_at >= max(first.finished_at, second.finished_at)


def test_a_waiting_job_is_not_run_until_its_upstream_succeeded(user):
    upstream = submit_demo(user, n=1)
    waiting = after(user, upstream)
    assert fresh(waiting).upstream_pending == 1
    assert run_one_slice(waiting.pk) == "not claimed"
    assert fresh(waiting).status == S.QUEUED
    run_to_end(upstream)
    assert fresh(waiting).upstream_pending == 0
    assert run_to_end(fresh(waiting)).status == S.SUCCEEDED


def test_a_failed_or_cancelled_upstream_cancels_the_chain_with_the_reason(user):
    failing = submit_demo(user, n=3, fail_at=1)
    middle = after(user, failing)
    tail = after(user, middle)
    run_to_end(failing)
    middle, tail = fresh(middle), fresh(tail)
    assert (middle.status, tail.status) == (S.CANCELLED, S.CANCELLED)
    assert f"job #{failing.pk}, which it waits for, failed" in middle.error
    assert f"job #{middle.pk}, which it waits for, cancelled" in tail.error
    upstream = submit_demo(user, n=3)
    waiting = after(user, upstream)
    job_cancel(job=upstream)
    assert fresh(waiting).status == S.CANCELLED


def test_waiting_for_a_failed_job_is_refused_and_retry_follows_the_upstream(user):
    failing = run_to_end(submit_demo(user, n=3, fail_at=1))
    with pytest.raises(JobActionError, match="a job cannot wait for it"):
        after(user, failing)
    upstream = submit_demo(user, n=1)
    waiting = after(user, upstream)
    job_cancel(job=upstream)
    with pytest.raises(JobActionError, match="retry that first"):
        job_retry(job=fresh(waiting))
    job_retry(job=fresh(upstream))
    job_retry(job=fresh(waiting))
    assert fresh(waiting).upstream_pending == 1


def test_the_api_takes_after_for_visible_jobs_only_and_lists_the_pipeline(
    settings, user, other_user
):
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]
    mine, theirs = submit_demo(user, n=1), submit_demo(other_user, n=1)
    client = Client()
    client.force_login(user)

    def submit(upstream):
        body = {"kind": "demo.count", "after": upstream}
        return client.post("/api/jobs/", body, content_type="application/json")

    refused = submit([theirs.pk])
    assert (
        refused.status_code == 400 and refused.json()["fields"]["after"] == f"no job #{theirs.pk}"
    )
    created = submit([mine.pk])
    assert created.status_code == 201
    data = created.json()
    assert (data["status"], data["depends_on"], data["waiting_for"]) == (
        "queued",
        [mine.pk],
        [mine.pk],
    )
    page = client.get(f"/jobs/{mine.pk}/").content.decode()
    assert f'Then <a href="/jobs/{data["id"]}/"' in page
    listed = client.get("/api/jobs/").json()["results"]
    assert {row["id"]: row["waiting_for"] for row in listed}[data["id"]] == [mine.pk]


def test_the_cli_submit_waits_with_after(user, tmp_path):
    upstream = submit_demo(user, n=1)
    source = tmp_path / "people.csv"
    source.write_text("name\nAda\n")
    call_command(
        "conveyor",
        "submit",
        str(source),
        "--processor",
        "clean",
        "--after",
        str(upstream.pk),
        "--user",
        "alice",
    )
    job = Job.objects.get(kind="sheets.process")
    assert job.upstream_pending == 1 and [d.depends_on_id for d in job.upstream_links.all()] == [
        upstream.pk
    ]


def test_the_cli_submit_waits_with_after_any_whatever_the_outcome(user, tmp_path):
    upstream = submit_demo(user, n=1)
    source = tmp_path / "people.csv"
    source.write_text("name\nAda\n")
    submitted = conveyor(
        "submit", str(source), "--processor", "clean", "--after-any", str(upstream.pk),
        "--user", "alice", "--json",
    )  # fmt: skip
    assert submitted.code == 0, submitted.err
    assert submitted.json()["waiting_for"] == [upstream.pk]
    job = Job.objects.get(pk=submitted.json()["id"])
    assert job.upstream_pending == 1
    assert [(d.depends_on_id, d.any_outcome) for d in job.upstream_links.all()] == [
        (upstream.pk, True)
    ]

    job_cancel(job=upstream)  # with --after this would cancel the job; with --after-any it runs
    job = fresh(job)
    assert (job.status, job.upstream_pending) == (S.QUEUED, 0)
    assert run_to_end(job).status == S.SUCCEEDED


def test_the_cli_after_any_is_refused_as_after_is(user, other_user, tmp_path):
    theirs = submit_demo(other_user, n=1)
    source = tmp_path / "people.csv"
    source.write_text("name\nAda\n")
    submit = ["submit", str(source), "--processor", "clean", "--user", "alice"]
    for given, error in [
        ("99999", "--after-any: no job #99999."),
        (str(theirs.pk), f"--after-any: no job #{theirs.pk}."),
        ("x", "--after-any takes job ids separated by commas, not 'x'."),
    ]:
        refused = conveyor(*submit, "--after-any", given)
        assert (refused.code, refused.err) == (EXIT_BAD_INPUT, error)
    batch = conveyor("submit", str(source), *submit[1:], "--after-any", str(theirs.pk))
    assert batch.code == EXIT_BAD_INPUT
    assert batch.err == "--after, --after-any and --wait take one PATH; several PATHs make a batch."
    assert not Job.objects.filter(kind="sheets.process").exists()
