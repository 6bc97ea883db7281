"""jobs/web/live.py (the relay) and jobs/web/consumers.py (the websocket at /ws/live/),
against the real database: authentication, snapshots, live fragments, isolation between
users, bad messages."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_cancel
from jobs.models import Job
from jobs.web import live
from tests.jobs.factories import submit_demo

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest_asyncio.fixture
async def relay():
    yield live.relay
    await live.relay.stop()


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def connect(user=None, query: str = "", origin=ORIGIN) -> WebsocketCommunicator:
    headers = [origin]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, f"/ws/live/{query}", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def receive_until(communicator, needle: str, timeout: float = 5.0) -> str:
    """Frames until one contains `needle` (fails after `timeout`)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no frame containing {needle!r} within {timeout} s")
        frame = await communicator.receive_from(timeout=remaining)
        if needle in frame:
            return frame


async def receive_all_until(communicator, needle: str, timeout: float = 5.0) -> list[str]:
    """Every frame up to and including the first one containing `needle`."""
    frames = []
    while True:
        frames.append(await receive_until(communicator, "", timeout))
        if needle in frames[-1]:
            return frames


run_slice_async = database_sync_to_async(run_one_slice)


async def test_anonymous_connections_are_closed_with_4401(relay):
    communicator = await connect(user=None)
    message = await communicator.receive_output(timeout=5)
    assert message == {"type": "websocket.close", "code": 4401}


async def test_a_foreign_origin_is_refused(relay, user):
    communicator = WebsocketCommunicator(
        application,
        "/ws/live/",
        headers=[
            (b"origin", b"http://evil.example"),
            (b"cookie", await sync_to_async(session_cookie)(user)),
        ],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_connect_sends_badges_then_the_job_snapshot(relay, user):
    job = await sync_to_async(submit_demo)(user, n=4, batch=2)
    communicator = await connect(user, f"?job={job.pk}")
    badges = await communicator.receive_from(timeout=5)
    assert 'id="nav-running-badge"' in badges and 'id="nav-unread-badge"' in badges
    snapshot = await communicator.receive_from(timeout=5)
    assert f'id="job-{job.pk}-live"' in snapshot and 'hx-swap-oob="true"' in snapshot
    assert "Queued" in snapshot and f'id="job-{job.pk}-timeline"' in snapshot
    await communicator.disconnect()


async def test_progress_and_completion_arrive_live_with_a_toast(relay, user):
    job = await sync_to_async(submit_demo)(user, n=4, batch=2)
    communicator = await connect(user, f"?job={job.pk}&rows=1")
    await receive_until(communicator, f'id="job-{job.pk}-live"')  # snapshot
    await run_slice_async(job.pk)
    frames = await receive_all_until(communicator, 'class="toast success"')
    done = [f for f in frames if 'data-status="succeeded"' in f]
    assert any(f'id="job-{job.pk}-live"' in f for f in done)
    assert 'hx-swap-oob="beforeend:#toasts"' in frames[-1] and "finished" in frames[-1]
    unread = 'id="nav-unread-badge" class="badge badge-unread" title="Unread notifications" hx-swap-oob="true">1</span>'
    frames += (
        await receive_all_until(communicator, unread)
        if not any(unread in f for f in frames)
        else []
    )
    assert any(unread in f for f in frames), "the badge shows one unread notification"
    await communicator.disconnect()


async def test_users_never_receive_other_users_jobs(relay, user, other_user, staff_user):
    mine = await connect(user, "?rows=1")
    theirs = await connect(other_user, "?rows=all")  # not staff: only their own rows
    staff = await connect(staff_user, "?rows=all")
    for communicator in (mine, theirs, staff):
        await communicator.receive_from(timeout=5)  # badges
    job = await sync_to_async(submit_demo)(user, n=2, batch=2)
    await run_slice_async(job.pk)
    await receive_until(mine, f'id="job-row-{job.pk}" class="job-row" data-status="succeeded"')
    await receive_until(staff, f'id="job-row-{job.pk}" class="job-row" data-status="succeeded"')
    assert await theirs.receive_nothing(timeout=0.5, interval=0.05)

    await theirs.send_to(text_data=json.dumps({"action": "subscribe", "job": job.pk}))
    error = json.loads(await receive_until(theirs, '{"error"'))
    assert error == {"error": f"job {job.pk} not found"}
    for communicator in (mine, theirs, staff):
        await communicator.disconnect()


async def test_bad_messages_get_error_frames_and_keep_other_subscriptions(relay, user):
    job = await sync_to_async(submit_demo)(user, n=20, batch=1, delay=0.01)
    communicator = await connect(user, f"?job={job.pk}")
    await receive_until(communicator, f'id="job-{job.pk}-live"')
    bad = [
        ("not json", "message must be JSON"),
        ("[1, 2]", "message must be a JSON object"),
        ('{"action": "dance"}', "action must be 'subscribe' or 'unsubscribe'"),
        (
            '{"action": "subscribe"}',
            "subscribe to a 'job' (id), an 'entity' (key) or a 'batch' (id)",
        ),
        ('{"action": "subscribe", "job": "abc"}', "job must be an integer id"),
        ('{"action": "subscribe", "job": 999999}', "job 999999 not found"),
        ('{"action": "subscribe", "entity": 5}', "entity must be a non-empty string"),
        ("x" * 5000, "message too large"),
    ]
    for text, expected in bad:
        await communicator.send_to(text_data=text)
        assert json.loads(await receive_until(communicator, '{"error"')) == {"error": expected}
    await sync_to_async(job_cancel)(job=job)
    cancelled = await receive_until(communicator, 'data-status="cancelled"')
    assert f'id="job-{job.pk}-live"' in cancelled, "still subscribed after the bad messages"
    await communicator.disconnect()


async def test_subscribe_and_unsubscribe_by_message(relay, user):
    job = await sync_to_async(submit_demo)(user, n=2, batch=2)
    communicator = await connect(user)
    await communicator.receive_from(timeout=5)  # badges
    await communicator.send_to(text_data=json.dumps({"action": "subscribe", "job": job.pk}))
    assert f'id="job-{job.pk}-live"' in await communicator.receive_from(timeout=5)
    await communicator.send_to(text_data=json.dumps({"action": "unsubscribe", "job": job.pk}))
    await sync_to_async(job_cancel)(job=job)
    badges = await receive_until(communicator, 'id="nav-unread-badge"')  # the toast's badges
    assert f'id="job-{job.pk}-live"' not in badges
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_entity_page_follows_whichever_job_is_latest(relay, user):
    first = await sync_to_async(submit_demo)(user, n=2, entity_key="sheet:7")
    communicator = await connect(user, "?entity=sheet:7")
    await communicator.receive_from(timeout=5)  # badges
    snapshot = await communicator.receive_from(timeout=5)
    assert 'id="current-job-live"' in snapshot and f"Job #{first.pk}" in snapshot
    await sync_to_async(job_cancel)(job=first)
    await receive_until(communicator, 'data-status="cancelled"')
    second = await sync_to_async(submit_demo)(user, n=2, entity_key="sheet:7")
    fragment = await receive_until(communicator, f"Job #{second.pk}")
    assert 'id="current-job-live"' in fragment
    await communicator.disconnect()


async def test_a_deleted_job_disappears_from_staff_lists(relay, user, staff_user):
    job = await sync_to_async(submit_demo)(user, n=1)
    await run_slice_async(job.pk)
    staff = await connect(staff_user, "?rows=all")
    await staff.receive_from(timeout=5)
    await sync_to_async(Job.objects.filter(pk=job.pk).delete)()
    from jobs.engine.journal import announce

    await sync_to_async(announce)(job.pk)
    frame = await receive_until(staff, f'id="job-row-{job.pk}"')
    assert 'hx-swap-oob="delete"' in frame
    await staff.disconnect()


def submit_demo_batch(owner, count: int = 2):
    from jobs.engine.services import Submission, batch_submit

    submissions = [Submission(kind="demo.count", params={"n": 2, "batch": 2}) for _ in range(count)]
    return batch_submit(owner=owner, submissions=submissions, label="two demos")


async def test_a_batch_page_gets_its_one_progress_live_and_others_cannot_subscribe(
    relay, user, other_user
):
    batch, jobs = await sync_to_async(submit_demo_batch)(user)
    page = await connect(user, f"?batch={batch.pk}")
    snapshot = await receive_until(page, f'id="batch-{batch.pk}-live"')
    assert "0 of 2 jobs ended" in snapshot
    theirs = await connect(other_user, f"?batch={batch.pk}")
    assert json.loads(await receive_until(theirs, '{"error"')) == {
        "error": f"batch {batch.pk} not found"
    }
    for job in jobs:
        await run_slice_async(job.pk)
    frames = await receive_all_until(page, "2 of 2 jobs ended")
    assert 'data-status="succeeded"' in frames[-1] and "100%" in frames[-1]
    toast = await receive_until(page, 'class="toast success"')
    assert "two demos finished: 2 succeeded" in toast
    for communicator in (page, theirs):
        await communicator.disconnect()


async def test_a_socket_that_has_opened_already_gets_what_its_user_is_sent(relay, user):
    # A page counts itself live when its socket opens; a toast pushed at that moment (a
    # job cancelled right after the page loaded) must not fall between the open and the
    # join of the user's group.
    communicator = await connect(user)
    await get_channel_layer().group_send(
        live.user_group(user.pk), {"type": "live.fragment", "html": '<div class="toast">x</div>'}
    )
    await receive_until(communicator, 'class="toast"')
    await communicator.disconnect()
