"""Entity and session keys on the pages (jobs/web/views.py): the jobs page's search
matches session keys, the notifications page keeps those about jobs with a key (or a
prefix, `grading-assign7-*`). Another user's keys are never matched, staff included."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.jobs.factories import run_to_end, submit_demo

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(client: Client, query: str) -> set[int]:
    response = client.get(f"/jobs/?{query}", **HX)
    assert response.status_code == 200
    return {job.pk for job in response.context["page"].object_list}


def test_the_jobs_page_search_matches_session_keys(user, other_user, staff_user):
    mine = submit_demo(user, n=1, session_key="tab-7f3a")
    other = submit_demo(user, n=1, session_key="tab-0000")
    theirs = submit_demo(other_user, n=1, session_key="tab-7f3a-bob")
    assert listed(logged_in(user), "q=7f3a") == {mine.pk}
    assert listed(logged_in(user), "q=tab-") == {mine.pk, other.pk}
    assert listed(logged_in(other_user), "q=7f3a") == {theirs.pk}
    # Staff's list of everyone's jobs matches labels and messages, not others' keys.
    assert listed(logged_in(staff_user), "all=1&q=7f3a") == set()


def test_the_notifications_page_filters_by_entity_and_session_key(user, other_user):
    ann = run_to_end(submit_demo(user, n=1, entity_key="grading-assign7-ann", session_key="s1"))
    bob = run_to_end(submit_demo(user, n=1, entity_key="grading-assign7-bob", session_key="s2"))
    other = run_to_end(submit_demo(user, n=1, entity_key="grading-assign8-ann", session_key="s3"))
    run_to_end(submit_demo(other_user, n=1, entity_key="grading-assign7-cy"))
    alice = logged_in(user)

    def shown(query: str) -> set[int]:
        response = alice.get(f"/jobs/notifications/?{query}")
        assert response.status_code == 200
        return {note.job_id for note in response.context["page"].object_list}

    assert shown("") == {ann.pk, bob.pk, other.pk}
    assert shown("entity=grading-assign7-*") == {ann.pk, bob.pk}
    assert shown("entity=grading-assign7-ann") == {ann.pk}
    assert shown("entity=grading-assign7-") == set()  # no star: the exact key
    assert shown("session=s3") == {other.pk}
    assert shown("session=s*&entity=grading-assign7-b*") == {bob.pk}
    assert shown("entity=grading-assign7-c*") == set()  # bob's key is not alice's
    html = alice.get("/jobs/notifications/?entity=grading-assign7-*").content.decode()
    assert 'value="grading-assign7-*"' in html and "Show all" in html
    assert (
        "No notification about a job of yours with that key."
        in alice.get("/jobs/notifications/?entity=nothing*").content.decode()
    )


def test_notification_filters_keep_through_pages_and_refuse_junk_quietly(user):
    for number in range(31):  # a page holds 30
        run_to_end(submit_demo(user, n=1, entity_key=f"bulk-{number}"))
    alice = logged_in(user)
    html = alice.get("/jobs/notifications/?entity=bulk-*").content.decode()
    assert "entity=bulk-%2A&amp;page=2" in html
    for junk in ("entity=%00", "session=" + "x" * 500, "entity=*", "page=x"):
        assert alice.get(f"/jobs/notifications/?{junk}").status_code == 200, junk
