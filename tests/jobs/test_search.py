"""Searching jobs by their params (`path=value` in the search; jobs/selectors.py): the
paths each kind declares (`job_kind(search_params=...)`), never a secret, on the
dashboard, the API's `q` and the admin; a path no kind offers is a clear 400 in the
API and a notice on the dashboard."""

from __future__ import annotations

import pytest
from django.test import Client

from jobs.engine.kinds import job_kind
from jobs.models import Job

pytestmark = pytest.mark.django_db


def sheet_job(owner, processor: str, *, model: str = "", sheet_id: int = 1, **extra) -> Job:
    options = {"model": model, "api_key": "enc:sealed"} if model else {}
    params = {"processor": processor, "sheet_id": sheet_id, "options": options, **extra}
    return Job.objects.create(kind="sheets.process", owner=owner, params=params, label=processor)


@pytest.fixture
def jobs(user):
    return {
        "llm_mini": sheet_job(user, "llm", model="gpt-4o-mini", sheet_id=7),
        "llm_big": sheet_job(user, "llm", model="gpt-4o", sheet_id=8, trial=True),
        "clean": sheet_job(user, "clean", sheet_id=7),
        "task": Job.objects.create(
            kind="tasks.default",
            owner=user,
            params={"task": "myapp.tasks.report", "processor": "llm"},
        ),
    }


def found(client: Client, q: str) -> set[int]:
    answer = client.get("/api/jobs/", {"q": q})
    assert answer.status_code == 200, answer.content
    return {job["id"] for job in answer.json()["results"]}


def test_the_api_finds_jobs_by_their_params(user, jobs):
    client = Client()
    client.force_login(user)
    ids = {name: job.pk for name, job in jobs.items()}
    assert found(client, "processor=llm") == {ids["llm_mini"], ids["llm_big"]}, (
        "a Tasks job with a 'processor' param is not a sheet job's processor"
    )
    assert found(client, "options.model=gpt-4o-mini") == {ids["llm_mini"]}
    assert found(client, "sheet_id=7") == {ids["llm_mini"], ids["clean"]}
    assert found(client, "sheet_id=7 processor=clean") == {ids["clean"]}
    assert found(client, "trial=true") == {ids["llm_big"]}
    assert found(client, 'options.model="gpt-4o"') == {ids["llm_big"]}
    assert found(client, "task=myapp.tasks.report") == {ids["task"]}
    assert found(client, "processor=llm mini") == set(), "the rest is text: labels say llm"
    assert found(client, "processor=llm llm") == {ids["llm_mini"], ids["llm_big"]}


@pytest.mark.parametrize("q", ["options.api_key=sk-secret", "colour=red", "params.processor=llm"])
def test_a_path_no_kind_offers_is_a_400_naming_what_is_searchable(user, jobs, q):
    client = Client()
    client.force_login(user)
    answer = client.get("/api/jobs/", {"q": q})
    assert answer.status_code == 400
    message = answer.json()["fields"]["q"]
    assert "jobs cannot be searched by" in message and "options.model" in message
    assert "api_key" not in message.split("; by:")[1]


def test_another_users_jobs_are_not_found_by_their_params(user, other_user, jobs):
    theirs = sheet_job(other_user, "llm", model="gpt-4o-mini")
    client = Client()
    client.force_login(user)
    assert theirs.pk not in found(client, "options.model=gpt-4o-mini")


def test_a_kind_may_not_offer_a_secret_for_search():
    with pytest.raises(ValueError, match="may not name secrets: options.api_key"):
        job_kind("test.leaky", search_params=("options.api_key",))(lambda ctx: None)


def test_the_dashboard_searches_params_and_says_when_it_cannot(user, jobs):
    client = Client()
    client.force_login(user)
    page = client.get("/jobs/", {"q": "options.model=gpt-4o-mini"}).content.decode()
    assert f'data-job="{jobs["llm_mini"].pk}"' in page or f"/jobs/{jobs['llm_mini'].pk}/" in page
    assert f"/jobs/{jobs['llm_big'].pk}/" not in page
    page = client.get("/jobs/", {"q": "colour=red"}).content.decode()
    assert 'id="search-error"' in page and "jobs cannot be searched by colour" in page


def test_the_admin_searches_params(staff_user, jobs):
    staff_user.is_superuser = True
    staff_user.save()
    client = Client()
    client.force_login(staff_user)
    page = client.get("/admin/jobs/job/", {"q": "processor=clean"}).content.decode()
    assert f"/admin/jobs/job/{jobs['clean'].pk}/change/" in page
    assert f"/admin/jobs/job/{jobs['llm_mini'].pk}/change/" not in page
