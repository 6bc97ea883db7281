"""Websocket URL map: one endpoint for all live updates."""

from __future__ import annotations

from django.urls import path

from jobs.web.consumers import LiveConsumer

websocket_urlpatterns = [path("ws/live/", LiveConsumer.as_asgi())]
