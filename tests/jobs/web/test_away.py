"""Coming back (SPEC, journey 2): jobs of the user that ended while no page of theirs was
open are listed by the next page they open, once ("… finished while you were away");
a toast the relay pushed to an open page counts as shown (jobs/web/live.py), the notice
is the context processor's (jobs/web/context_processors.py)."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.urls import reverse

from jobs.models import Notification
from jobs.web import live
from tests.jobs.factories import run_to_end, submit_demo
from tests.jobs.web.test_live import connect, receive_until
from tests.support.processes import wait_for

AWAY = "while you were away"


@pytest_asyncio.fixture
async def relay():
    yield live.relay
    await live.relay.stop()


def page(client, path: str = "/", **headers) -> str:
    return client.get(path, **headers).content.decode()


@pytest.mark.django_db
def test_the_next_page_lists_a_job_that_ended_meanwhile_once(client, user):
    job = run_to_end(submit_demo(user, n=3, label="Short count"))
    client.force_login(user)

    html = page(client, "/sheets/")
    assert 'id="away-notices"' in html
    assert f'<a href="/jobs/{job.pk}/">Short count finished while you were away</a>' in html
    assert AWAY not in page(client, "/sheets/"), "shown once"
    assert AWAY not in page(client, "/")
    # Still unread: listed (as new) on the notifications page until read.
    notifications = page(client, reverse("jobs:notifications"))
    assert "Short count finished" in notifications and "unread" in notifications


@pytest.mark.django_db
def test_a_failed_job_says_so_and_why_and_many_are_counted(client, user):
    for number in range(6):
        run_to_end(submit_demo(user, n=1, label=f"Job {number}"))
    run_to_end(submit_demo(user, n=3, fail_at=2, label="Counting"))
    client.force_login(user)

    html = page(client)  # the five newest: "Counting" and Jobs 5 to 2
    assert f"Counting failed {AWAY}</a>: " in html
    assert html.count(f"finished {AWAY}") == 4
    assert "Job 5 finished" in html and "Job 1 finished" not in html
    assert f"… and 2 more {AWAY}" in html
    assert AWAY not in page(client)


@pytest.mark.django_db
def test_fragments_and_other_users_do_not_take_the_notice(client, user, other_user):
    run_to_end(submit_demo(user, n=2, label="Mine"))
    client.force_login(other_user)
    assert AWAY not in page(client), "another user's job"

    client.force_login(user)
    # An htmx re-read of a part of an open page: the page is open, the part shows no notice.
    assert AWAY not in page(client, "/jobs/", HTTP_HX_REQUEST="true")
    assert f"Mine finished {AWAY}" in page(client, "/jobs/")


@pytest.mark.django_db
def test_a_job_seen_on_its_page_is_not_news(client, user):
    """The job's own page (the notice's link) marks its notification read."""
    job = run_to_end(submit_demo(user, n=2, label="Looked at"))
    client.force_login(user)
    page(client, f"/jobs/{job.pk}/")
    assert AWAY not in page(client)


def shown(*jobs) -> list[bool]:
    notes = dict(Notification.objects.filter(job__in=jobs).values_list("job_id", "shown_at"))
    return [notes[job.pk] is not None for job in jobs]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_toast_pushed_to_an_open_page_is_shown_the_others_are_not(relay, user, other_user):
    """The user's page is open (its socket joined their group); the other user has none."""
    mine = await sync_to_async(submit_demo)(user, n=2, label="Mine")
    theirs = await sync_to_async(submit_demo)(other_user, n=2, label="Theirs")
    communicator = await connect(user)
    await sync_to_async(run_to_end)(theirs)
    await sync_to_async(run_to_end)(mine)
    await receive_until(communicator, "Mine finished")

    await sync_to_async(wait_for)(lambda: shown(mine)[0], timeout=5, what="marked shown")
    assert await sync_to_async(shown)(mine, theirs) == [True, False]
    await communicator.disconnect()
