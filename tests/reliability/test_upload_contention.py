"""A several-file upload parses its files while other users keep writing: no request
holds SQLite's one write lock while it reads spreadsheets (DESIGN.md, "Known traps"), so
another user's page POSTs and the workers' heartbeats go on during the parse.

Real processes: a daphne and a qcluster on the test database, driven over HTTP.
"""

from __future__ import annotations

import http.client
import secrets
import threading
from collections.abc import Iterator

import pytest
from django.test import Client

from jobs.models import Worker
from sheets.models import Sheet, SheetRow
from tests.daphne import Daphne
from tests.sheets.factories import make_sheet
from tests.sheets.make_files import big_xlsx

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

# A write that waits for the lock longer than this fails ("database is locked", a 500)
# instead of after the default 30 s: a lock held for a whole parse shows within the test.
# Every write this test makes (a rename, a heartbeat, one sheet's rows) is far shorter.
BUSY = {"SQLITE_BUSY_TIMEOUT": "5"}
FILES = 4
ROWS = 20_000  # per file: several seconds of openpyxl parsing for the four together
CSRF = "c" * 32  # any 32-character secret works as cookie and header alike


@pytest.fixture(scope="module")
def workbook(tmp_path_factory) -> bytes:
    return big_xlsx(tmp_path_factory.mktemp("upload") / "contacts.xlsx", ROWS).read_bytes()


@pytest.fixture
def web(transactional_db) -> Iterator[Daphne]:
    server = Daphne(**BUSY).start()
    yield server
    server.stop()


def cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}"


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files.items()
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(
    web: Daphne, path: str, body: bytes, content_type: str, cookies: str, timeout: float = 60
) -> int:
    """POST `body`; the answer's status. A write answered later than `timeout` seconds
    (the lock's victims waited minutes) raises TimeoutError."""
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type, "Cookie": cookies, "X-CSRFToken": CSRF}
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_other_users_write_while_a_several_file_upload_is_parsed(
    cluster_factory, web, user, other_user, workbook
):
    cluster = cluster_factory(workers=1, **BUSY)
    (worker,) = Worker.objects.filter(pid__in=cluster.worker_pids())
    bobs = make_sheet(other_user, [["a"], ["1"]])
    body, content_type = multipart({f"contacts-{n}.xlsx": workbook for n in range(1, FILES + 1)})
    upload: dict[str, int] = {}

    def send_upload() -> None:
        # The parse itself may take long on a busy machine: only the others' writes must not.
        upload["status"] = post(web, "/sheets/upload/", body, content_type, cookie(user), 600)

    uploading = threading.Thread(target=send_upload)
    bob = cookie(other_user)
    rename = f"/sheets/{bobs.pk}/rename/"
    form = "application/x-www-form-urlencoded"
    statuses: list[int] = []
    # Writes and heartbeats that completed before the upload answered and before any of
    # its sheets was stored: with a transaction around the parse, none can.
    writes_during_parse = 0
    beats_during_parse = 0
    last_beat = Worker.objects.get(pk=worker.pk).last_seen_at
    uploading.start()
    while uploading.is_alive():
        statuses.append(post(web, rename, f"name=bob+{len(statuses)}".encode(), form, bob))
        beat = Worker.objects.get(pk=worker.pk).last_seen_at
        stored = Sheet.objects.filter(owner=user).exists()
        if uploading.is_alive() and not stored:
            writes_during_parse += 1
            beats_during_parse += beat != last_beat
        last_beat = beat
    uploading.join()

    assert upload["status"] == 302, web.log()[-3000:]
    assert set(statuses) == {302}, f"bob's renames answered {statuses}"
    assert writes_during_parse >= 3, f"only {writes_during_parse} of bob's writes overlapped"
    assert beats_during_parse >= 2, f"the worker beat {beats_during_parse} times meanwhile"
    bobs.refresh_from_db()
    assert bobs.name == f"bob {len(statuses) - 1}"
    sheets = Sheet.objects.filter(owner=user)
    assert sorted(sheets.values_list("row_count", flat=True)) == [ROWS] * FILES
    assert SheetRow.objects.filter(sheet__owner=user).count() == ROWS * FILES
    assert "database is locked" not in web.log() + cluster.log()
