"""jobs/actions: every entry of every registry (jobs, batches, schedules) is reachable
on the pages, the API, the admin and the CLI, and a refusal reads the same on each.

The tests walk the registries, so a new entry is covered without a new test."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.sites import site
from django.test import Client, RequestFactory
from django.urls import resolve, reverse
from django.utils import timezone

from jobs.actions.base import Action, Registry
from jobs.actions.batches import BATCHES
from jobs.actions.jobs import JOBS
from jobs.actions.schedules import SCHEDULES
from jobs.admin import admin_action
from jobs.cli.base import VERBS
from jobs.cli.verbs import BATCH_GROUP
from jobs.engine.services import Submission, batch_submit
from jobs.models import Batch, Job, Schedule
from jobs.schedules.services import schedule_create, schedule_pause
from tests.jobs.api.conftest import client_for
from tests.jobs.cli.test_verbs import conveyor
from tests.jobs.factories import fresh, submit_demo

pytestmark = pytest.mark.django_db

S = Job.Status


def names(registry: Registry) -> list[str]:
    return list(registry)


def options_reaching(registry: Registry, name: str) -> list[tuple[Action, str]]:
    """(entry, option name) pairs whose option turns that entry into `name`."""
    return [
        (parent, option.name)
        for parent in registry.values()
        for option in parent.options
        if option.action == name
    ]


def cli_words(registry: Registry, name: str, group: str = "") -> list[list[str]]:
    """The command lines that run entry `name` (its own verb, or another's flag)."""
    prefix = [group] if group else []
    lines = [[*prefix, name]] if registry[name].on_cli else []
    for parent, option in options_reaching(registry, name):
        flag = "--" + option.replace("_", "-")
        lines.append([*prefix, parent.name, flag])
    return lines


def admin_names(registry: Registry, model: type) -> set[str]:
    request = RequestFactory().get("/admin/")
    request.user = type("Operator", (), {"has_perm": lambda self, perm: True})()
    return set(site._registry[model].get_actions(request))


def finished(job: Job) -> Job:
    Job.objects.filter(pk=job.pk).update(
        status=S.SUCCEEDED, started_at=timezone.now(), finished_at=timezone.now()
    )
    return fresh(job)


# -- reachable everywhere -----------------------------------------------------------------


@pytest.mark.parametrize("name", names(JOBS))
def test_every_job_action_has_a_page_route_an_api_route_an_admin_action_and_a_cli_verb(name):
    assert resolve(f"/jobs/7/{name}/").url_name == "action"
    assert reverse(f"api:{name}", args=[7]) == f"/api/jobs/7/{name}/"
    assert admin_action(JOBS, JOBS[name]).__name__ in admin_names(JOBS, Job)
    lines = cli_words(JOBS, name)
    assert lines, f"{name} has no CLI verb and no option of another verb"
    for words in lines:
        assert words[0] in VERBS


@pytest.mark.parametrize("name", names(SCHEDULES))
def test_every_schedule_action_has_a_page_route_an_api_route_an_admin_action_and_a_cli_verb(name):
    assert resolve(f"/schedules/7/{name}/").url_name == "action"
    assert reverse(f"api:schedule-{name}", args=[7]) == f"/api/schedules/7/{name}/"
    assert admin_action(SCHEDULES, SCHEDULES[name]).__name__ in admin_names(SCHEDULES, Schedule)
    assert f"schedule {name}" in VERBS


@pytest.mark.parametrize("name", names(BATCHES))
def test_every_batch_action_has_a_page_route_an_api_route_and_a_cli_verb(name):
    """Batches have no admin actions of their own: the admin's batch page links to its
    jobs, where every job action applies."""
    assert resolve(f"/jobs/batches/7/{name}/").url_name == "batch_action"
    assert resolve(f"/api/batches/7/{name}/").url_name == "batch-action"
    assert f"{BATCH_GROUP} {name}" in VERBS
    assert name in JOBS


# -- the same refusal on every front end ---------------------------------------------------


def refusals(
    client: Client, registry: Registry, name: str, obj, *, page: str, api: str, user: str
) -> dict[str, str]:
    """What the page (htmx or form), the API and the CLI say when `name` is refused."""
    said = {}
    response = client.post(page, follow=True)
    said["page"] = " ".join(str(m) for m in response.context["messages"])
    response = client.post(api.format(name=name))
    assert response.status_code == 409, (name, response.content)
    said["api"] = response.json()["error"]
    for parent, option in options_reaching(registry, name):
        response = client.post(
            api.format(name=parent.name), {option: True}, content_type="application/json"
        )
        said[f"api {parent.name} {option}"] = response.json()["error"]
    group = "schedule" if registry is SCHEDULES else ""
    for words in cli_words(registry, name, group):
        result = conveyor(*words, str(obj.pk), "--user", user)
        assert result.code == 2, (words, result)
        said[" ".join(words)] = result.err.removeprefix("Error: ").strip()
    return said


def one_refusal(said: dict[str, str]) -> str:
    assert len(set(said.values())) == 1, said
    return next(iter(said.values()))


@pytest.mark.parametrize("name", names(JOBS))
def test_a_job_action_that_does_not_apply_is_refused_in_the_same_words_everywhere(
    name, user, staff_user
):
    action = JOBS[name]
    candidates = [finished(submit_demo(user, n=3)), submit_demo(user, n=3)]
    job = next(job for job in candidates if not action.applies(job))
    client = client_for(staff_user)
    said = refusals(
        client,
        JOBS,
        name,
        job,
        page=f"/jobs/{job.pk}/{name}/",
        api=f"/api/jobs/{job.pk}/{{name}}/",
        user=staff_user.username,
    )
    htmx = client.post(f"/jobs/{job.pk}/{name}/", HTTP_HX_REQUEST="true")
    assert htmx.status_code == 409
    said["htmx"] = htmx.content.decode()
    admin = client.post(
        "/admin/jobs/job/",
        {
            "action": admin_action(JOBS, action).__name__,
            "_selected_action": [job.pk],
            "post": "yes",
        },
        follow=True,
    )
    reported = " ".join(str(m) for m in admin.context["messages"])
    said["admin"] = reported.split(" skipped: ", 1)[1]
    assert one_refusal(said).startswith(f"Job #{job.pk}") or "cannot retry" in said["api"]
    assert fresh(job).status == job.status


@pytest.mark.parametrize("name", names(JOBS))
def test_anothers_job_is_refused_in_the_same_words_everywhere(name, user, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    job = submit_demo(user, n=3)
    said = refusals(
        client_for(viewer),
        JOBS,
        name,
        job,
        page=f"/jobs/{job.pk}/{name}/",
        api=f"/api/jobs/{job.pk}/{{name}}/",
        user="viewer",
    )
    assert one_refusal(said) == f"Job #{job.pk} belongs to another user; you may not {name} it."
    assert fresh(job).status == S.QUEUED


def a_schedule(owner, *, paused: bool = False) -> Schedule:
    schedule = schedule_create(owner=owner, kind="demo.count", params={"n": 1}, every=60)
    return schedule_pause(schedule=schedule) if paused else schedule


@pytest.mark.parametrize("name", names(SCHEDULES))
def test_a_schedule_action_is_refused_in_the_same_words_everywhere(
    name, user, staff_user, django_user_model
):
    """A state that does not allow it where there is one (pause a paused schedule),
    else another user's schedule."""
    action = SCHEDULES[name]
    candidates = [a_schedule(user, paused=True), a_schedule(user)]
    schedule = next((s for s in candidates if not action.applies(s)), None)
    actor = staff_user
    if schedule is None:
        actor = django_user_model.objects.create_user("viewer", is_staff=True)
        schedule = candidates[1]
    said = refusals(
        client_for(actor),
        SCHEDULES,
        name,
        schedule,
        page=f"/schedules/{schedule.pk}/{name}/",
        api=f"/api/schedules/{schedule.pk}/{{name}}/",
        user=actor.username,
    )
    refusal = one_refusal(said)
    if actor == staff_user:
        assert refusal == action.why_not(schedule)
    else:
        assert refusal == f"Schedule #{schedule.pk} belongs to another user; you may not change it."
    assert Schedule.objects.filter(pk=schedule.pk, enabled=schedule.enabled).exists()


def a_batch(owner) -> Batch:
    """A batch of a finished job and a queued one: every action skips one of them."""
    batch, jobs = batch_submit(
        owner=owner, submissions=[Submission(kind="demo.count", params={"n": 3})] * 2
    )
    finished(jobs[0])
    return batch


def without_ids(text: str) -> str:
    return re.sub(r"#\d+", "#N", text)


@pytest.mark.parametrize("name", names(BATCHES))
def test_a_batch_action_skips_in_the_same_words_everywhere(name, user):
    client = client_for(user)
    api = client.post(f"/api/batches/{a_batch(user).pk}/{name}/").json()
    page = client.post(f"/jobs/batches/{a_batch(user).pk}/{name}/", follow=True)
    cli = conveyor(BATCH_GROUP, name, str(a_batch(user).pk), "--user", user.username)
    assert cli.code == 0, cli
    assert api["skipped"], f"{name} applies to a queued or to a finished job, not to both"
    said = {
        "api": " ".join(api["skipped"]),
        "page": " ".join(str(m) for m in page.context["messages"]),
        "cli": cli.out.strip().replace("\n", " "),
    }
    assert api["changed"] + len(api["skipped"]) == 2
    reasons = {front: without_ids(text.split(" skipped: ", 1)[-1]) for front, text in said.items()}
    one_refusal(reasons)
