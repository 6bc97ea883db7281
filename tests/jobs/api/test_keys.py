"""Entity and session keys as first-class lookups in the JSON API: prefixes
(`/api/jobs/by-entity/<prefix>*/`, `?entity_prefix=`), `q=` over session keys, and
notifications asked for by key. Keys belong to their owner: another user's keys are
never matched (staff name an owner with `?owner=`)."""

from __future__ import annotations

import pytest

from jobs.engine.services import Submission, batch_submit
from jobs.models import Notification
from tests.jobs.factories import run_to_end, submit_demo

pytestmark = pytest.mark.django_db


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(job["id"] for job in response.json()["results"])


@pytest.fixture
def grading(user, other_user):
    """alice's jobs on assignment 7 (two), on 8 (one), and bob's on 7 (same prefix)."""
    return {
        "a7-1": submit_demo(user, n=1, entity_key="grading-assign7-ann", session_key="s-ann"),
        "a7-2": submit_demo(user, n=1, entity_key="grading-assign7-bob", session_key="s-bob"),
        "a8-1": submit_demo(user, n=1, entity_key="grading-assign8-ann", session_key="t-ann"),
        "bob": submit_demo(other_user, n=1, entity_key="grading-assign7-cy", session_key="s-cy"),
    }


def test_by_entity_with_a_star_lists_the_callers_jobs_with_that_prefix(alice, bob, grading):
    mine = alice.get("/api/jobs/by-entity/grading-assign7-*/")
    assert ids(mine) == sorted([grading["a7-1"].pk, grading["a7-2"].pk])
    assert mine.json()["count"] == 2 and mine.json()["page"] == 1
    assert ids(bob.get("/api/jobs/by-entity/grading-assign7-*/")) == [grading["bob"].pk]
    assert ids(alice.get("/api/jobs/by-entity/grading-*/?page_size=1")) == [grading["a8-1"].pk]
    assert ids(alice.get("/api/jobs/by-entity/grading-assign9-*/")) == []
    # Compared exactly, on SQLite too (whose LIKE ignores case).
    assert ids(alice.get("/api/jobs/by-entity/Grading-assign7-*/")) == []
    # One key without a star: still the one job.
    one = alice.get("/api/jobs/by-entity/grading-assign7-ann/").json()
    assert one["id"] == grading["a7-1"].pk


def test_by_session_with_a_star_lists_the_callers_jobs_with_that_prefix(alice, grading):
    assert ids(alice.get("/api/jobs/by-session/s-*/")) == sorted(
        [grading["a7-1"].pk, grading["a7-2"].pk]
    )
    assert ids(alice.get("/api/jobs/by-session/t-*/?kind=demo.count")) == [grading["a8-1"].pk]
    assert ids(alice.get("/api/jobs/by-session/t-*/?kind=other")) == []


def test_staff_match_another_users_keys_only_by_naming_them(staff, grading):
    assert ids(staff.get("/api/jobs/by-entity/grading-assign7-*/")) == []
    named = staff.get("/api/jobs/by-entity/grading-assign7-*/?owner=bob")
    assert ids(named) == [grading["bob"].pk]
    assert ids(staff.get("/api/jobs/?entity_prefix=grading-assign7-")) == []
    assert ids(staff.get("/api/jobs/?entity_prefix=grading-assign7-&owner=bob")) == [
        grading["bob"].pk
    ]
    assert ids(staff.get("/api/jobs/?q=s-cy")) == []  # staff list all jobs, not all keys
    assert ids(staff.get("/api/jobs/?q=s-cy&owner=bob")) == [grading["bob"].pk]


def test_the_job_list_filters_by_key_and_prefix(alice, bob, grading):
    assert ids(alice.get("/api/jobs/?entity_prefix=grading-assign7-")) == sorted(
        [grading["a7-1"].pk, grading["a7-2"].pk]
    )
    assert ids(alice.get("/api/jobs/?entity_key=grading-assign8-ann")) == [grading["a8-1"].pk]
    assert ids(alice.get("/api/jobs/?session_prefix=s-&entity_prefix=grading-assign7-b")) == [
        grading["a7-2"].pk
    ]
    assert ids(alice.get("/api/jobs/?session_key=s-cy")) == []
    assert ids(bob.get("/api/jobs/?session_key=s-cy")) == [grading["bob"].pk]


def test_q_matches_session_keys(alice, grading):
    assert ids(alice.get("/api/jobs/?q=t-ann")) == [grading["a8-1"].pk]
    assert ids(alice.get("/api/jobs/?q=S-BOB")) == [grading["a7-2"].pk]  # like the other text
    assert ids(alice.get("/api/jobs/?q=s-cy")) == []  # bob's key


def test_notifications_filtered_by_entity_and_session_key(alice, bob, user, other_user, grading):
    for job in grading.values():
        run_to_end(job)
    batch, _ = batch_submit(
        owner=user,
        submissions=[
            Submission(
                kind="demo.count", params={"n": 1}, owner=user, entity_key="grading-assign7-dee"
            )
        ],
        label="more grading",
    )
    run_to_end(batch.jobs.get())

    def notified(client, query: str) -> set[str]:
        """What each notification is about: "job N" or "batch N"."""
        response = client.get(f"/api/notifications/?{query}")
        assert response.status_code == 200, response.content
        return {
            f"job {n['job_id']}" if n["job_id"] else f"batch {n['batch_id']}"
            for n in response.json()["results"]
        }

    a7, a8 = grading["a7-1"].pk, grading["a8-1"].pk
    assert notified(alice, "entity_prefix=grading-assign7-") == {
        f"job {a7}",
        f"job {grading['a7-2'].pk}",
        f"batch {batch.pk}",  # the batch's one notification, for its job with that key
    }
    assert notified(alice, "entity_key=grading-assign8-ann") == {f"job {a8}"}
    assert notified(alice, "session_key=s-bob") == {f"job {grading['a7-2'].pk}"}
    assert notified(alice, "session_prefix=t-&unread=1") == {f"job {a8}"}
    assert notified(alice, "session_key=s-cy") == set()  # bob's job, bob's notification
    assert notified(bob, "entity_prefix=grading-") == {f"job {grading['bob'].pk}"}
    # Without a key filter: all of mine, as before.
    assert len(notified(alice, "")) == Notification.objects.filter(user=user).count() == 4


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/jobs/by-entity/*/", "key"),
        ("/api/jobs/by-session/*/", "key"),
        ("/api/jobs/by-entity/k/?page=2", "page"),
        ("/api/jobs/by-entity/k*/?page=x", "page"),
        ("/api/jobs/?entity_key=a&entity_prefix=b", "entity_prefix"),
        ("/api/jobs/?session_prefix=" + "x" * 201, "session_prefix"),
        ("/api/notifications/?entity_key=a&entity_prefix=b", "entity_prefix"),
        ("/api/notifications/?session_prefix=%00", "session_prefix"),
    ],
)
def test_bad_key_lookups_are_a_400_naming_the_field(alice, url, field):
    response = alice.get(url)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
