"""Operators' holds on whole kinds of work (jobs.engine.controls, jobs.actions.kinds):
a paused kind or processor starts nothing new and parks its running jobs at their next
checkpoint; resume runs them again and says so on their timelines; caps set at run time
bound how many run at once; bad input is refused with the field's name."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone

from jobs.actions.kinds import kind_cap, kind_list, kind_pause, kind_resume
from jobs.engine import controls, dispatch, runner
from jobs.engine.errors import ControlError, JobActionError
from jobs.engine.services import job_run_now, job_submit
from jobs.models import Job, KindControl
from sheets.services import sheet_job_submit
from tests.jobs.factories import fresh, messages, run_to_end, submit_demo
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db

S = Job.Status


@pytest.fixture(autouse=True)
def no_cached_controls():
    controls.forget()
    yield
    controls.forget()


def sheet_job(owner, processor: str = "copy") -> Job:
    sheet = make_sheet(owner, [["a"], ["1"], ["2"]])
    job, _ = sheet_job_submit(sheet=sheet, owner=owner, processor=processor, columns=["a"])
    return job


def test_a_paused_kind_starts_nothing_and_new_submits_wait_until_resumed(user, staff_user):
    kind_pause("demo.count", by=staff_user, reason="upstream degraded")
    job = submit_demo(user, n=2)
    assert fresh(job).status == S.QUEUED, "the submit is accepted"
    assert runner.run_one_slice(job.pk) == "not claimed"
    assert not Job.objects.claimable().filter(pk=job.pk).exists()
    assert list(Job.objects.held_back()) == [fresh(job)]

    kind_resume("demo.count", by=staff_user)
    assert run_to_end(job).status == S.SUCCEEDED


def test_pausing_a_processor_holds_only_the_sheet_jobs_that_run_it(user, staff_user):
    copy_job, demo_job = sheet_job(user, "copy"), submit_demo(user, n=1)
    assert copy_job.subkind == "copy"
    kind_pause("copy", by=staff_user)
    assert runner.run_one_slice(copy_job.pk) == "not claimed"
    assert run_to_end(demo_job).status == S.SUCCEEDED
    kind_resume("copy", by=staff_user)
    assert run_to_end(copy_job).status == S.SUCCEEDED


def test_a_running_job_parks_at_its_next_checkpoint_and_resume_says_who(user, staff_user):
    job = submit_demo(user, n=3)
    claimed = dispatch.claim_dispatched(job.pk, "worker-1")
    kind_pause("demo.count", by=staff_user, reason="provider down")

    settlement = runner.run_claimed(claimed, "worker-1")
    runner.settle(job.pk, "worker-1", settlement)

    parked = fresh(job)
    assert (settlement.name, parked.status, parked.lease_owner) == ("parked", S.QUEUED, "")
    assert any(
        line.startswith("Parked: demo.count paused by operator since ")
        and line.endswith(": provider down")
        for line in messages(job)
    ), messages(job)
    kind_resume("demo.count", by=staff_user)
    assert "demo.count resumed by operator" in messages(job)
    assert run_to_end(job).status == S.SUCCEEDED


def test_a_cap_set_at_run_time_bounds_the_jobs_running_and_parks_the_last_claimed(user, staff_user):
    first, second = submit_demo(user, n=5), submit_demo(user, n=5)
    assert dispatch.claim_dispatched(first.pk, "w1") is not None
    assert dispatch.claim_dispatched(second.pk, "w2") is not None

    kind_cap("demo.count", 1, by=staff_user)
    assert controls.hold_on(first.pk, "demo.count", "") is None
    assert controls.hold_on(second.pk, "demo.count", "") == (
        "demo.count is capped at 1 running at once",
        "demo.count",
    )
    third = submit_demo(user, n=1)
    assert dispatch.claim_dispatched(third.pk, "w3") is None, "at its cap"

    kind_cap("demo.count", None, by=staff_user)
    assert dispatch.claim_dispatched(third.pk, "w3") is not None


def test_the_list_shows_kinds_processors_holds_and_caps(staff_user):
    kind_pause("llm", by=staff_user, reason="rate limited")
    kind_cap("tasks.default", 2, by=staff_user)
    listing = {row["name"]: row for row in kind_list()}
    assert listing["llm"]["type"] == "processor"
    assert listing["llm"]["kind"] == "sheets.process"
    assert listing["llm"]["paused"] is True
    assert listing["llm"]["notice"].startswith("llm paused by operator since ")
    assert listing["tasks.default"]["cap"] == 2
    assert listing["demo.count"] == {
        **listing["demo.count"],
        "type": "kind",
        "paused": False,
        "cap": None,
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda who: kind_pause("nope", by=who), "name: unknown kind, queue or processor 'nope'"),
        (lambda who: kind_pause("", by=who), "name: give a job kind"),
        (lambda who: kind_pause("llm", by=who, reason="x" * 501), "reason: at most 500"),
        (lambda who: kind_cap("llm", 0, by=who), "cap: a whole number from 1 to 10000"),
        (lambda who: kind_cap("llm", 10_001, by=who), "cap: a whole number from 1 to 10000"),
        (lambda who: kind_cap("llm", "two", by=who), "cap: a whole number from 1 to 10000"),
        (lambda who: kind_cap("llm", True, by=who), "cap: a whole number from 1 to 10000"),
    ],
)
def test_bad_input_is_refused_with_the_fields_name(staff_user, call, message):
    with pytest.raises(ControlError, match=message):
        call(staff_user)
    assert not KindControl.objects.exists()


def test_only_staff_may_hold_kinds(user):
    with pytest.raises(JobActionError, match="Only staff"):
        kind_pause("llm", by=user)
    assert not KindControl.objects.exists()


def test_a_job_waiting_for_its_time_runs_now(user):
    job, _ = job_submit(
        kind="demo.count",
        params={"n": 1},
        owner=user,
        run_after=timezone.now() + timedelta(hours=1),
    )
    assert runner.run_one_slice(job.pk) == "not claimed"
    job_run_now(job=job, by=user)
    assert "Run now by alice" in messages(job)
    assert runner.run_one_slice(job.pk) == "succeeded"
    with pytest.raises(JobActionError, match="only a job waiting for its time can run now"):
        job_run_now(job=fresh(job), by=user)


def test_the_admin_pauses_caps_and_resumes_through_the_services(client, staff_user):
    client.force_login(staff_user)
    response = client.post(
        "/admin/jobs/kindcontrol/add/",
        {"name": "llm", "paused": "on", "reason": "provider degraded", "cap": "2"},
    )
    assert response.status_code == 302, response.content
    row = KindControl.objects.get(name="llm")
    assert (row.is_paused, row.paused_by, row.reason, row.cap) == (
        True,
        "operator",
        "provider degraded",
        2,
    )
    refused = client.post("/admin/jobs/kindcontrol/add/", {"name": "nope", "cap": "0"})
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors.keys() == {"name", "cap"}

    client.post(
        "/admin/jobs/kindcontrol/",
        {"action": "resume_selected", "_selected_action": [row.pk]},
    )
    assert not KindControl.objects.get(name="llm").is_paused


def test_a_default_cap_from_settings_holds_until_an_operator_changes_it(user, staff_user, settings):
    settings.CONVEYOR_KIND_CAPS = {"demo.count": 1}
    first, second = submit_demo(user, n=5), submit_demo(user, n=5)
    assert dispatch.claim_dispatched(first.pk, "w1") is not None
    assert dispatch.claim_dispatched(second.pk, "w2") is None
    listing = {row["name"]: row for row in kind_list()}
    assert (listing["demo.count"]["cap"], listing["demo.count"]["default_cap"]) == (None, 1)

    kind_cap("demo.count", 2, by=staff_user)
    assert dispatch.claim_dispatched(second.pk, "w2") is not None


def test_the_migration_gives_active_jobs_from_before_their_sub_kind(user):
    migration = importlib.import_module("jobs.migrations.0018_kind_controls")
    job = sheet_job(user, "copy")
    Job.objects.filter(pk=job.pk).update(subkind="")  # as submitted before the migration
    migration.fill_subkinds(django_apps, None)
    assert fresh(job).subkind == "copy"
