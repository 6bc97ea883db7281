"""Live sockets end with the login: closed within seconds of logout or session expiry,
and a user may hold only so many at once."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from config.asgi import application
from jobs.web import live
from jobs.web.socket_guard import CLOSE_LOGGED_OUT, CLOSE_TOO_MANY, guard

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ORIGIN = (b"origin", b"http://127.0.0.1")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_socket(client: Client) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(application, "/ws/live/", headers=[ORIGIN, (b"cookie", cookie)])
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
