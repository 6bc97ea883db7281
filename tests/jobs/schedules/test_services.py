"""Schedules (jobs/schedules/services.py): one job per due time however many workers and
clusters look, the overlap policy, one make-up run after downtime, and the services
users go through. In-process tests pass explicit `now` values; the cluster tests run
real `qcluster` processes against a short interval."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.engine.errors import JobActionError, ScheduleError
from jobs.engine.services import job_cancel, job_submit
from jobs.models import Job, JobEvent, Schedule
from jobs.schedules import services as schedules
from jobs.schedules.services import (
    due_runs,
    run_due_schedules,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_run_now,
    schedule_update,
)
from tests.jobs.factories import fresh, run_to_end
from tests.support.processes import wait_for

S = Job.Status
T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def short_intervals(settings) -> None:
    settings.CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS = 1


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def every(owner, seconds: int = 10, now: datetime = T0, **kw) -> Schedule:
    params = kw.pop("params", {"n": 1})
    return schedule_create(
        owner=owner, kind="demo.count", params=params, every=seconds, now=now, **kw
    )


def runs(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(schedule=schedule).order_by("scheduled_for"))


def reload(schedule: Schedule) -> Schedule:
    return Schedule.objects.get(pk=schedule.pk)


# -- in process, explicit times ------------------------------------------------------


@pytest.mark.django_db
def test_a_due_schedule_starts_one_job_for_its_due_time_then_waits_for_the_next(user):
    schedule = every(user, 10)
    assert reload(schedule).next_run_at == at(10)
    assert run_due_schedules(at(9.9)) == []
    [outcome] = run_due_schedules(at(10.2))
    assert outcome.outcome == "started"
    [job] = runs(schedule)
    assert (job.pk, job.scheduled_for, job.owner, job.kind) == (
        outcome.job_id,
        at(10),
        user,
        "demo.count",
    )
    assert job.params == {"n": 1}  # the job's params carry nothing extra
    schedule = reload(schedule)
    assert (schedule.next_run_at, schedule.last_run_at, schedule.last_job) == (
        at(20),
        at(10.2),
        job,
    )
    assert schedule.run_count == 1
    assert run_due_schedules(at(10.3)) == []  # claimed: nothing more until 20 s
    assert len(runs(schedule)) == 1


@pytest.mark.django_db
def test_a_due_time_is_claimed_by_one_worker_only(user):
    """Two workers that both saw the same due time: the compare-and-set lets one through."""
    schedule = every(user, 10)
    [(schedule_id, due)] = due_runs(at(10.1))
    first = schedules._claim_and_run(schedule_id, due, at(10.1))
    second = schedules._claim_and_run(schedule_id, due, at(10.15))
    assert first is not None and first.outcome == "started"
    assert second is None
    assert [job.scheduled_for for job in runs(schedule)] == [at(10)]


@pytest.mark.django_db
def test_two_jobs_for_one_due_time_are_refused_by_the_database(user):
    schedule = every(user, 10)
    job_submit(kind="demo.count", params={}, owner=user, schedule=schedule, scheduled_for=at(10))
    with pytest.raises(IntegrityError), transaction.atomic():
        job_submit(
            kind="demo.count", params={}, owner=user, schedule=schedule, scheduled_for=at(10)
        )


@pytest.mark.django_db
def test_after_downtime_a_schedule_runs_once_not_once_per_missed_due_time(user):
    schedule = every(user, 10)
    outcomes = run_due_schedules(at(45))  # due at 10, 20, 30, 40: all missed
    assert [o.outcome for o in outcomes] == ["started"]
    assert [job.scheduled_for for job in runs(schedule)] == [at(10)]
    assert reload(schedule).next_run_at == at(50)  # still on the 10 s grid
    assert run_due_schedules(at(46)) == []


@pytest.mark.django_db
def test_a_cron_schedule_after_downtime_runs_once_then_at_its_next_wall_time(user):
    schedule = schedule_create(
        owner=user, kind="demo.count", cron="30 2 * * *", timezone="Europe/Paris", now=T0
    )
    first_due = reload(schedule).next_run_at
    assert first_due == datetime(2026, 5, 5, 0, 30, tzinfo=UTC)  # 02:30 CEST
    three_days_later = first_due + timedelta(days=3, hours=1)
    assert len(run_due_schedules(three_days_later)) == 1
    assert [job.scheduled_for for job in runs(schedule)] == [first_due]
    assert reload(schedule).next_run_at == first_due + timedelta(days=4)


@pytest.mark.django_db
def test_skip_policy_records_the_skipped_due_time_while_the_last_run_is_active(user):
    schedule = every(user, 10)
    [started] = run_due_schedules(at(10))
    [skipped] = run_due_schedules(at(20))
    assert (skipped.outcome, skipped.job_id) == ("skipped", started.job_id)
    assert len(runs(schedule)) == 1
    schedule = reload(schedule)
    assert (schedule.skipped_count, schedule.last_skipped_at) == (1, at(20))
    assert schedule.next_run_at == at(30)
    timeline = JobEvent.objects.filter(job_id=started.job_id).values_list("message", flat=True)
    assert not any("skipped" in message for message in timeline)  # counted, not journaled
    run_to_end(Job.objects.get(pk=started.job_id))
    [next_run] = run_due_schedules(at(30))
    assert next_run.outcome == "started"
    assert [job.scheduled_for for job in runs(schedule)] == [at(10), at(30)]


@pytest.mark.django_db
def test_skipped_due_times_count_on_the_schedule_and_add_nothing_to_the_active_jobs_timeline(
    user,
):
    schedules = [every(user, 10) for _ in range(5)]
    started = [outcome.job_id for outcome in run_due_schedules(at(10))]
    events_before = JobEvent.objects.filter(job_id__in=started).count()
    for tick in range(2, 12):  # ten more due times, every one skipped by every schedule
        outcomes = run_due_schedules(at(10 * tick))
        assert [o.outcome for o in outcomes] == ["skipped"] * len(schedules)
    assert JobEvent.objects.filter(job_id__in=started).count() == events_before
    for schedule in map(reload, schedules):
        assert (schedule.skipped_count, schedule.last_skipped_at) == (10, at(110))
        assert schedule.run_count == 1


@pytest.mark.django_db
def test_queue_policy_starts_a_run_even_while_the_last_one_is_active(user):
    schedule = every(user, 10, overlap="queue")
    run_due_schedules(at(10))
    run_due_schedules(at(20))
    assert [(job.scheduled_for, job.status) for job in runs(schedule)] == [
        (at(10), S.QUEUED),
        (at(20), S.QUEUED),
    ]


@pytest.mark.django_db
def test_a_run_the_kind_refuses_is_recorded_and_the_schedule_moves_on(user, settings):
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    job_submit(kind="demo.count", params={}, owner=user)  # the one active job allowed
    schedule = every(user, 10)
    [outcome] = run_due_schedules(at(10))
    assert outcome.outcome == "failed"
    schedule = reload(schedule)
    assert "active jobs" in schedule.last_error
    assert schedule.next_run_at == at(20)
    assert runs(schedule) == []


@pytest.mark.django_db
def test_nothing_due_costs_one_query(user, django_assert_num_queries):
    every(user, 10)
    with django_assert_num_queries(1):
        assert run_due_schedules(at(5)) == []


@pytest.mark.django_db
def test_a_paused_schedule_does_not_run_and_resumes_from_the_next_due_time(user):
    schedule = every(user, 10)
    schedule_pause(schedule=schedule)
    assert reload(schedule).next_run_at is None
    assert run_due_schedules(at(100)) == []
    with pytest.raises(JobActionError):
        schedule_pause(schedule=reload(schedule))
    schedule_resume(schedule=reload(schedule), now=at(100))
    assert reload(schedule).next_run_at == at(110)
    with pytest.raises(JobActionError):
        schedule_resume(schedule=reload(schedule))


@pytest.mark.django_db
def test_a_deactivated_owners_schedules_pause_at_once_and_say_why(user, other_user):
    mine, theirs = every(user, 10), every(other_user, 10)
    user.is_active = False
    user.save()  # as the admin's "active" box does
    mine = reload(mine)
    assert (mine.enabled, mine.next_run_at) == (False, None)
    assert mine.paused_reason == schedules.OWNER_INACTIVE
    assert reload(theirs).enabled
    assert [o.schedule_id for o in run_due_schedules(at(100))] == [theirs.pk]
    with pytest.raises(JobActionError, match="deactivated"):
        schedule_resume(schedule=mine)
    with pytest.raises(ScheduleError, match="deactivated"):
        schedule_update(schedule=mine, changes={"enabled": True})
    with pytest.raises(JobActionError, match="deactivated"):
        schedule_run_now(schedule=mine)
    assert runs(mine) == []

    user.is_active = True
    user.save()  # reactivating does not resume: the owner (or staff) resumes each one
    assert not reload(mine).enabled
    schedule_resume(schedule=reload(mine), now=at(100))
    mine = reload(mine)
    assert (mine.enabled, mine.next_run_at, mine.paused_reason) == (True, at(110), "")


@pytest.mark.django_db
def test_an_owner_deactivated_without_a_save_is_paused_at_the_due_time_with_no_run(user):
    schedule = every(user, 10)
    type(user).objects.filter(pk=user.pk).update(is_active=False)  # no signal
    [outcome] = run_due_schedules(at(10))
    assert outcome.outcome == "failed" and "deactivated" in outcome.reason
    schedule = reload(schedule)
    assert (schedule.enabled, schedule.next_run_at) == (False, None)
    assert schedule.paused_reason == schedules.OWNER_INACTIVE
    assert runs(schedule) == []
    assert run_due_schedules(at(20)) == []


@pytest.mark.django_db
def test_a_user_has_at_most_the_schedule_ceiling(user, staff_user, settings):
    settings.CONVEYOR_MAX_SCHEDULES_PER_USER = 3
    for _ in range(3):
        every(user, 10)
    with pytest.raises(JobActionError, match="CONVEYOR_MAX_SCHEDULES_PER_USER=3"):
        every(user, 10)
    assert Schedule.objects.filter(owner=user).count() == 3
    schedule_delete(schedule=Schedule.objects.filter(owner=user).first())
    every(user, 10)  # a deleted one frees its place
    for _ in range(4):
        every(staff_user, 10)  # staff: no limit
    settings.CONVEYOR_MAX_SCHEDULES_PER_USER = 0
    every(user, 10)  # 0: no limit


@pytest.mark.django_db
def test_changing_the_recurrence_moves_the_next_run(user):
    schedule = every(user, 10)
    schedule_update(
        schedule=schedule,
        changes={"cron": "0 7 * * *", "timezone": "Europe/Paris"},
        now=at(1),
    )
    schedule = reload(schedule)
    assert (schedule.cron, schedule.every_seconds) == ("0 7 * * *", None)
    assert schedule.next_run_at == datetime(2026, 5, 5, 5, 0, tzinfo=UTC)  # 07:00 CEST
    with pytest.raises(ScheduleError) as raised:
        schedule_update(schedule=schedule, changes={"timezone": "Nowhere/Land", "overlap": "x"})
    assert set(raised.value.fields) == {"timezone", "overlap"}
    with pytest.raises(ScheduleError):
        schedule_update(schedule=schedule, changes={"kind": "demo.serial"})


@pytest.mark.django_db
def test_renaming_a_schedule_read_before_a_claim_does_not_offer_that_due_time_again(user):
    stale = every(user, 10)
    run_due_schedules(at(10))  # a worker claims 10 s meanwhile: next run 20 s
    schedule_update(schedule=stale, changes={"name": "renamed", "enabled": True})
    assert (reload(stale).name, reload(stale).next_run_at) == ("renamed", at(20))
    assert run_due_schedules(at(11)) == []


@pytest.mark.django_db
def test_bad_schedules_are_refused_with_every_bad_field_and_nothing_created(user):
    with pytest.raises(ScheduleError) as raised:
        schedule_create(
            owner=user, kind="no.such", cron="0 7 * *", overlap="sometimes", priority="urgent"
        )
    assert set(raised.value.fields) == {"kind", "cron", "overlap", "priority"}
    with pytest.raises(ScheduleError) as raised:
        schedule_create(owner=user, kind="demo.count", every="0s")
    assert set(raised.value.fields) == {"every"}
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_run_now_respects_the_skip_policy_and_leaves_the_next_due_time(user):
    schedule = every(user, 10)
    job = schedule_run_now(schedule=schedule, now=at(3))
    assert (job.schedule_id, job.scheduled_for) == (schedule.pk, at(3))
    assert reload(schedule).next_run_at == at(10)
    assert reload(schedule).last_job == job
    with pytest.raises(JobActionError, match="still active"):
        schedule_run_now(schedule=schedule, now=at(4))
    job_cancel(job=job)
    assert schedule_run_now(schedule=schedule, now=at(5)).scheduled_for == at(5)
    queueing = every(user, 10, overlap="queue")
    schedule_run_now(schedule=queueing, now=at(6))
    schedule_run_now(schedule=queueing, now=at(7))
    assert len(runs(queueing)) == 2


@pytest.mark.django_db
def test_deleting_a_schedule_keeps_its_jobs(user):
    schedule = every(user, 10)
    run_due_schedules(at(10))
    [job] = runs(schedule)
    schedule_delete(schedule=schedule)
    assert not Schedule.objects.filter(pk=schedule.pk).exists()
    job = fresh(job)
    assert (job.schedule_id, job.scheduled_for) == (None, at(10))


@pytest.mark.django_db
def test_secret_params_are_sealed_in_the_schedule_and_in_its_runs(user):
    schedule = every(user, 10, params={"n": 1, "api_key": "sk-very-secret"})
    assert reload(schedule).params["api_key"].startswith("enc:")
    run_due_schedules(at(10))
    [job] = runs(schedule)
    assert job.params["api_key"].startswith("enc:")


# -- real clusters ------------------------------------------------------------------------


def _spacing_ok(times: list[datetime], interval: float) -> bool:
    """Distinct, increasing, and each gap a whole number of intervals."""
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    return all(gap > 0 and abs(gap / interval - round(gap / interval)) < 1e-6 for gap in gaps)


def _runs_then_pause(schedule, count: int, what: str) -> None:
    """Wait for `count` runs of `schedule`, pause it, and wait for its runs to finish."""
    wait_for(
        lambda: Job.objects.filter(schedule=schedule).count() >= count,
        timeout=60,
        interval=0.2,
        what=what,
    )
    schedule_pause(schedule=reload(schedule))
    wait_for(
        lambda: not Job.objects.filter(schedule=schedule).active().exists(),
        timeout=60,
        what="the runs to finish",
    )


@pytest.mark.cluster
def test_two_clusters_start_exactly_one_job_per_due_time(cluster_factory, user):
    clusters = [cluster_factory(workers=2), cluster_factory(workers=2)]
    schedule = every(user, 2, now=timezone.now(), overlap="queue")
    _runs_then_pause(schedule, 6, "six scheduled runs")
    for cluster in clusters:
        cluster.stop()
    jobs = runs(schedule)
    times = [job.scheduled_for for job in jobs]
    assert max(Counter(times).values()) == 1
    assert _spacing_ok(times, 2.0), times
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert gaps.count(2.0) >= len(gaps) - 1, gaps  # at most one due time late enough to miss
    assert all(job.status == S.SUCCEEDED for job in jobs)
    assert reload(schedule).run_count == len(jobs)
    assert all("already started" not in cluster.log() for cluster in clusters)


@pytest.mark.cluster
def test_skip_starts_no_run_while_a_slow_run_is_active(cluster, user):
    schedule = every(user, 2, now=timezone.now(), params={"n": 14, "delay": 0.25})  # ~3.5 s
    _runs_then_pause(schedule, 3, "three scheduled runs")
    jobs = runs(schedule)
    for earlier, later in zip(jobs, jobs[1:], strict=False):
        assert later.created_at >= earlier.finished_at  # never two at once
        assert (later.scheduled_for - earlier.scheduled_for).total_seconds() >= 4  # skips
    assert _spacing_ok([job.scheduled_for for job in jobs], 2.0)
    assert reload(schedule).skipped_count >= len(jobs) - 1
    timelines = JobEvent.objects.filter(job__schedule=schedule).values_list("message", flat=True)
    assert not [message for message in timelines if "skipped" in message]


@pytest.mark.cluster
def test_a_deactivated_owners_schedule_starts_nothing_more_under_a_cluster(cluster, user):
    schedule = every(user, 1, now=timezone.now(), overlap="queue")
    wait_for(lambda: len(runs(schedule)) >= 2, timeout=60, interval=0.2, what="two runs")
    type(user).objects.filter(pk=user.pk).update(is_active=False)  # no signal: the due time
    # Taken after the commit: a claim from now on reads the inactive owner; one that read
    # it active before the commit has a due time before this.
    deactivated_at = timezone.now()
    wait_for(lambda: not reload(schedule).enabled, timeout=30, interval=0.2, what="the pause")
    schedule = reload(schedule)
    assert schedule.paused_reason == schedules.OWNER_INACTIVE
    assert not [job for job in runs(schedule) if job.scheduled_for > deactivated_at]


@pytest.mark.cluster
def test_a_cluster_down_over_three_due_times_makes_up_one_run(cluster_factory, user):
    first = cluster_factory(workers=1)
    schedule = every(user, 2, now=timezone.now(), overlap="queue")
    wait_for(lambda: len(runs(schedule)) >= 2, timeout=60, interval=0.2, what="two runs")
    first.stop()
    before = len(runs(schedule))
    missed_from = reload(schedule).next_run_at
    # Three due times pass with no worker alive: missed_from, +2 s, +4 s.
    wait_for(
        lambda: timezone.now() > missed_from + timedelta(seconds=4.5),
        timeout=30,
        interval=0.1,
        what="three due times to pass",
    )
    assert len(runs(schedule)) == before
    restarted_at = timezone.now()
    cluster_factory(workers=1)
    wait_for(lambda: len(runs(schedule)) >= before + 2, timeout=60, interval=0.2, what="runs again")
    schedule_pause(schedule=reload(schedule))
    # From missed_from, not from when stop() returned: under load that due time may pass
    # while the first cluster is still stopping.
    after_restart = [job for job in runs(schedule) if job.scheduled_for >= missed_from]
    made_up = [job for job in after_restart if job.scheduled_for < restarted_at]
    assert [job.scheduled_for for job in made_up] == [missed_from]  # one, for the first miss
    later = [job.scheduled_for for job in after_restart if job not in made_up]
    assert later and all(when > restarted_at for when in later)
    assert _spacing_ok([job.scheduled_for for job in runs(schedule)], 2.0)
