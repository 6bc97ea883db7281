"""What a `web` job's page shows while it runs: pages/min, hosts in flight and the
slowest hosts, from this session's own requests (one slice in one worker). The sheet
job adds `pace_status()` to its progress message."""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_SECONDS = 60.0
SLOWEST = 3
HOST_CHARS = 40  # a long host name is cut: the message has room for ~500 characters


class LiveStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # read from the job's thread, written on the loop
        self._began = time.monotonic()
        self._pages: deque[float] = deque()  # when each page (a row's last response) ended
        self._in_flight: dict[str, int] = {}
        self._seconds: dict[str, tuple[int, float]] = {}  # host -> (responses, total seconds)

    def started(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] = self._in_flight.get(host, 0) + 1

    def ended(self, host: str, seconds: float) -> None:
        with self._lock:
            left = self._in_flight.get(host, 1) - 1
            if left:
                self._in_flight[host] = left
            else:
                self._in_flight.pop(host, None)
            count, total = self._seconds.get(host, (0, 0.0))
            self._seconds[host] = (count + 1, total + seconds)

    def page(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._pages.append(now)
            while self._pages and self._pages[0] < now - WINDOW_SECONDS:
                self._pages.popleft()

    def status(self) -> str:
        """ "420 pages/min · 12 hosts in flight · slowest: a.example 2.4 s, b.example 1.9 s"."""
        now = time.monotonic()
        with self._lock:
            while self._pages and self._pages[0] < now - WINDOW_SECONDS:
                self._pages.popleft()
            span = min(WINDOW_SECONDS, now - self._began)
            pages = len(self._pages)
            hosts = len(self._in_flight)
            means = sorted(
                ((total / count, host) for host, (count, total) in self._seconds.items()),
                reverse=True,
            )[:SLOWEST]
        if not pages and not hosts:
            return ""
        parts = [
            f"{pages * 60 / max(span, 1.0):,.0f} pages/min",
            f"{hosts} host{'s' if hosts != 1 else ''} in flight",
        ]
        if means:
            slowest = ", ".join(f"{host[:HOST_CHARS]} {mean:.1f} s" for mean, host in means)
            parts.append(f"slowest: {slowest}")
        return " · ".join(parts)
