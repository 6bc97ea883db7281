"""Live sockets end with the login: closed within seconds of logout, session expiry,
deactivation or a password change; a demoted staff user's socket stops receiving
other users' jobs; and a user may hold only so many at once."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from config.asgi import application
from jobs.web import live
from jobs.web.socket_guard import CLOSE_LOGGED_OUT, CLOSE_TOO_MANY, guard
from tests.jobs.factories import submit_demo
from tests.jobs.web.test_live import receive_all_until, receive_until, run_slice_async

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ORIGIN = (b"origin", b"http://127.0.0.1")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_socket(client: Client, query: str = "") -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [ORIGIN, (b"cookie", cookie)]
    socket = WebsocketCommunicator(application, f"/ws/live/{query}", headers=headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    await socket.receive_from(timeout=5)  # the badges snapshot
    return socket


async def closed_with(socket: WebsocketCommunicator, timeout: float) -> int:
    """The close code the socket gets within `timeout` (skipping frames before it)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        output = await socket.receive_output(timeout=max(0.01, left))
        if output["type"] == "websocket.close":
            return output.get("code")


async def test_logging_out_closes_the_open_socket_within_5_seconds(user):
    client = await sync_to_async(logged_in)(user)
    socket = await open_socket(client)
    await sync_to_async(client.post)("/logout/")
    assert await closed_with(socket, timeout=5) == CLOSE_LOGGED_OUT
    await live.relay.stop()


async def test_an_expired_session_closes_the_socket(user):
    client = await sync_to_async(logged_in)(user)
    socket = await open_socket(client)
    key = client.cookies["sessionid"].value
    await sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=timezone.now())
    assert await closed_with(socket, timeout=5) == CLOSE_LOGGED_OUT
    await live.relay.stop()


async def test_a_user_beyond_the_socket_limit_is_refused(user, settings):
    settings.CONVEYOR_MAX_SOCKETS_PER_USER = 2
    client = await sync_to_async(logged_in)(user)
    first, second = await open_socket(client), await open_socket(client)
    third = WebsocketCommunicator(
        application,
        "/ws/live/",
        headers=[ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())],
    )
    await third.connect(timeout=5)
    assert "too many live connections" in await third.receive_from(timeout=5)
    assert await closed_with(third, timeout=5) == CLOSE_TOO_MANY
    for socket in (first, second):
        await socket.disconnect()
    assert not guard.sockets
    await live.relay.stop()


async def test_deactivating_the_user_closes_the_socket_within_5_seconds(user):
    client = await sync_to_async(logged_in)(user)
    socket = await open_socket(client)
    await sync_to_async(type(user).objects.filter(pk=user.pk).update)(is_active=False)
    assert await closed_with(socket, timeout=5) == CLOSE_LOGGED_OUT
    await live.relay.stop()


async def test_a_password_change_closes_the_socket_as_it_logs_out_the_session(user):
    client = await sync_to_async(logged_in)(user)
    socket = await open_socket(client)

    def change_password() -> None:  # as `manage.py changepassword` or the admin's form do
        user.set_password("a-new-password")
        user.save()

    await sync_to_async(change_password)()
    assert await closed_with(socket, timeout=5) == CLOSE_LOGGED_OUT
    await live.relay.stop()


async def _refused_within(socket: WebsocketCommunicator, job_id: int, timeout: float) -> None:
    """Subscribe to job `job_id` until the socket answers "not found" (fails after
    `timeout`): the socket now applies the user's new rights."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await socket.send_to(text_data=json.dumps({"action": "subscribe", "job": job_id}))
        while True:  # frames up to the answer: the snapshot, or the error frame
            frame = await socket.receive_from(timeout=max(0.01, deadline - loop.time()))
            if frame.startswith('{"error"'):
                assert json.loads(frame) == {"error": f"job {job_id} not found"}
                return
            if f'id="job-{job_id}-timeline"' in frame:
                break
        await asyncio.sleep(0.1)  # poll pacing, not synchronisation: the deadline decides
    raise AssertionError(f"job {job_id} still subscribable {timeout} s after the demotion")


async def test_a_demoted_staff_socket_no_longer_receives_other_users_jobs(other_user, staff_user):
    first = await sync_to_async(submit_demo)(other_user, n=2, batch=2)
    later = await sync_to_async(submit_demo)(other_user, n=2, batch=2)
    client = await sync_to_async(logged_in)(staff_user)
    socket = await open_socket(client, f"?rows=all&job={later.pk}")
    await receive_until(socket, f'id="job-{later.pk}-timeline"')
    await run_slice_async(first.pk)
    await receive_until(socket, f'id="job-row-{first.pk}" class="job-row" data-status="succeeded"')

    model = type(staff_user)
    await sync_to_async(model.objects.filter(pk=staff_user.pk).update)(
        is_staff=False, is_superuser=False
    )
    await _refused_within(socket, later.pk, timeout=5)
    own = await sync_to_async(submit_demo)(staff_user, n=2, batch=2)
    await run_slice_async(later.pk)
    await run_slice_async(own.pk)
    frames = await receive_all_until(
        socket, f'id="job-row-{own.pk}" class="job-row" data-status="succeeded"'
    )
    assert not [f for f in frames if f"job-row-{later.pk}" in f or f'data-job="{later.pk}"' in f]
    await socket.disconnect()
    await live.relay.stop()
