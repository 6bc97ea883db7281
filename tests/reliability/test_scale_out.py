"""Scale-out on one machine: PostgreSQL, django-q2's Redis broker, two `qcluster`
processes and two `daphne` processes on 127.0.0.1. Several sheet jobs run while one
whole cluster is killed mid-job; every row is recorded exactly once, the jobs finish,
and websocket clients of both web processes see the progress live.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import threading
from collections import defaultdict

import pytest
import redis
from django.db import connection
from django.db.models import Count
from django.test import Client
from django_q.models import OrmQ

from jobs.models import Job
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.conftest import TEST_REDIS_DB
from tests.daphne import Daphne
from tests.jobs.factories import messages
from tests.sheets.factories import make_sheet
from tests.support.processes import wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
]

S = Job.Status
JOBS = 4
ROWS = 5_000
# A database of its own (one per test run: TEST_REDIS_DB), so the test's queue and stats
# keys are easy to drop.
REDIS_DB = 11 + TEST_REDIS_DB
ROW_FRAME = re.compile(
    r'<tr id="job-row-(\d+)" class="job-row" data-status="(\w+)".*?'
    r'<div class="muted small">(\d+)(?: / (\d+))?',
    re.S,
)


class WebsocketClient:
    """A minimal RFC 6455 client that records every text frame in a background thread.

    (No websocket client library is installed; daphne's autobahn is server-side here.)
    """

    def __init__(self, port: int, path: str, session: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\nCookie: sessionid={session}\r\n\r\n"
            ).encode()
        )
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        assert b" 101 " in status, f"websocket handshake refused: {status!r}"
        while self.stream.readline() not in (b"\r\n", b""):
            pass
        self.sock.settimeout(None)
        self.frames: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        message = b""
        try:
            while True:
                head = self.stream.read(2)
                if len(head) < 2:
                    return
                fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
                if length == 126:
                    length = int.from_bytes(self.stream.read(2), "big")
                elif length == 127:
                    length = int.from_bytes(self.stream.read(8), "big")
                payload = self.stream.read(length)
                if opcode == 0x8:  # close
                    return
                if opcode == 0x9:  # ping
                    self._send(0xA, payload)
                    continue
                if opcode in (0x0, 0x1):
                    message += payload
                    if fin:
                        with self.lock:
                            self.frames.append(message.decode())
                        message = b""
        except OSError:
            return

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes([0x80 | opcode, 0x80 | size])
        else:
            header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def received(self) -> list[str]:
        with self.lock:
            return list(self.frames)

    def job_rows(self) -> dict[int, list[tuple[str, int, int | None]]]:
        """Every job row fragment received: job id -> [(status, processed, total), ...]."""
        seen: dict[int, list[tuple[str, int, int | None]]] = defaultdict(list)
        for frame in self.received():
            for job_id, status, processed, total in ROW_FRAME.findall(frame):
                seen[int(job_id)].append((status, int(processed), int(total) if total else None))
        return seen

    def close(self) -> None:
        try:
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def redis_queue(redis_url, monkeypatch):
    """A Redis database for the broker, emptied of django-q2's keys before and after.

    The test process enqueues too (dispatch after submit), so its broker is pointed
    at the same Redis as the clusters'.
    """
    from django_q.brokers.redis_broker import Redis as RedisBroker

    url = f"{redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"
    client = redis.Redis.from_url(url)

    def drop_keys() -> None:
        keys = client.keys("django_q:*")
        if keys:
            client.delete(*keys)

    class TestBroker(RedisBroker):
        @staticmethod
        def get_connection(list_key: str | None = None) -> redis.Redis:
            return redis.Redis.from_url(url)

    drop_keys()
    before = set(client.keys("*"))
    monkeypatch.setattr("jobs.engine.dispatch._broker", TestBroker())
    yield url
    drop_keys()
    created = set(client.keys("*")) - before
    if created:
        client.delete(*created)
    client.close()


def csv_rows(count: int) -> list[list[str]]:
    header = ["name", "email", "phone", "website"]
    rows = [
        [
            f" person {i} ",
            f"Person.{i}@Example.COM",
            f"+1 415 555 {i % 10_000:04d}",
            f"site{i}.example",
        ]
        for i in range(count)
    ]
    return [header, *rows]


def mid_job_victim(clusters) -> tuple[object, Job] | None:
    """A cluster whose worker holds a job that is part-way through, and that job."""
    for job in Job.objects.filter(status=S.RUNNING).exclude(lease_owner=""):
        if not 0 < job.processed < ROWS:
            continue
        pid = int(job.lease_owner.rsplit(":", 1)[1])
        for cluster in clusters:
            if pid in cluster.worker_pids():
                return cluster, job
    return None


def test_two_clusters_and_two_web_processes_survive_losing_a_cluster(
    cluster_factory, redis_queue, user
):
    if connection.vendor != "postgresql":
        pytest.skip("the scale-out topology needs PostgreSQL (it runs in the PostgreSQL pass)")
    env = {"REDIS_URL": redis_queue}
    clusters = [cluster_factory(workers=2, **env), cluster_factory(workers=2, **env)]
    webs = [Daphne(**env), Daphne(**env)]
    clients: list[WebsocketClient] = []
    try:
        for web in webs:
            web.start()
        browser = Client()
        browser.force_login(user)
        session = browser.cookies["sessionid"].value
        for web in webs:
            client = WebsocketClient(web.port, "/ws/live/?rows=1", session)
            clients.append(client)
            wait_for(client.received, timeout=10, what="the badges snapshot on connect")

        sheets = [make_sheet(user, csv_rows(ROWS), name=f"part{i}.csv") for i in range(JOBS)]
        jobs = [sheet_job_submit(sheet=s, owner=user, processor="clean")[0] for s in sheets]

        victim, interrupted = wait_for(
            lambda: mid_job_victim(clusters), timeout=30, interval=0.02, what="a job mid-way"
        )
        victim.kill()

        def all_done() -> bool:
            statuses = set(
                Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
            )
            assert not statuses & {S.FAILED, S.CANCELLED}, statuses
            return statuses == {S.SUCCEEDED}

        wait_for(all_done, timeout=90, interval=0.2, what="every job to succeed")

        for job in jobs:
            job.refresh_from_db()
            assert (job.processed, job.failed, job.total) == (ROWS, 0, ROWS)
            results = RowResult.objects.filter(job=job)
            assert results.count() == ROWS, f"job #{job.pk}: one result per row"
            numbers = set(results.values_list("row_number", flat=True))
            assert numbers == set(range(1, ROWS + 1))
        duplicates = (
            RowResult.objects.values("job", "row_number").annotate(n=Count("pk")).filter(n__gt=1)
        )
        assert not duplicates.exists(), "no row recorded twice"
        assert not OrmQ.objects.exists(), "every task went through Redis, none through the ORM"
        assert any(m.startswith("Recovered:") for m in messages(interrupted)), (
            "the killed cluster's job was recovered by the other one"
        )

        for number, client in enumerate(clients, 1):
            wait_for(
                lambda c=client: all(
                    (S.SUCCEEDED, ROWS, ROWS) in c.job_rows().get(j.pk, []) for j in jobs
                ),
                timeout=10,
                what=f"web process {number}'s client to see every job succeed",
            )
            seen = client.job_rows()
            for job in jobs:
                progress = [
                    p for status, p, _ in seen[job.pk] if status == S.RUNNING and 0 < p < ROWS
                ]
                assert progress, f"web process {number}'s client saw job #{job.pk} progress live"
    finally:
        for client in clients:
            client.close()
        for web in webs:
            web.stop()
