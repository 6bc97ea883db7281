"""The sheets list marks each sheet whose results came in since its owner last opened it
("new results"), until the owner opens the sheet (sheets/chains.py `with_new_results`,
`Sheet.seen_at`, stamped by the sheet's page and its live results table)."""

from __future__ import annotations

import pytest
from django.test import Client

from jobs.engine.services import job_cancel
from sheets.models import Sheet
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db

MARK = "new results</span>"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_of(html: str, sheet: Sheet) -> str:
    row = html[html.index(f'<a href="/sheets/{sheet.pk}/">') :]
    return row[: row.index("</td>")]


def marked(client: Client, *sheets: Sheet) -> list[bool]:
    html = client.get("/sheets/").content.decode()
    return [MARK in row_of(html, sheet) for sheet in sheets]


def processed(sheet: Sheet, owner) -> None:
    job, created = sheet_job_submit(sheet=sheet, owner=owner, processor="clean")
    assert created
    run_to_end(job)


def test_a_sheet_is_marked_until_its_owner_opens_it(user):
    alice = logged_in(user)
    done = make_sheet(user, [["name"], ["a"], ["b"]], name="done.csv")
    idle = make_sheet(user, [["name"], ["c"]], name="idle.csv")
    assert marked(alice, done, idle) == [False, False]

    processed(done, user)  # finished while no page of it was open
    assert marked(alice, done, idle) == [True, False]
    assert alice.get(f"/sheets/{done.pk}/").status_code == 200
    assert marked(alice, done, idle) == [False, False]

    processed(done, user)  # new results again
    assert marked(alice, done, idle) == [True, False]


def test_the_live_results_table_counts_as_seen(user):
    """Watching the job on the sheet's page: the table's refreshes stamp the sheet, so
    results seen arriving are not "new" on the list afterwards."""
    alice = logged_in(user)
    sheet = make_sheet(user, [["name"], ["a"]])
    alice.get(f"/sheets/{sheet.pk}/")
    processed(sheet, user)
    assert marked(alice, sheet) == [True]
    assert alice.get(f"/sheets/{sheet.pk}/results/").status_code == 200
    assert marked(alice, sheet) == [False]


def test_only_the_owners_look_clears_the_mark(user, staff_user):
    sheet = make_sheet(user, [["name"], ["a"]])
    processed(sheet, user)
    assert logged_in(staff_user).get(f"/sheets/{sheet.pk}/").status_code == 200
    assert marked(logged_in(user), sheet) == [True]


def test_a_job_that_processed_nothing_brings_no_mark(user):
    alice = logged_in(user)
    sheet = make_sheet(user, [["name"], ["a"]])
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="clean")
    job_cancel(job=job)  # cancelled while queued: no results
    other = make_sheet(user, [["name"], ["b"]], name="other.csv")
    processed(other, user)
    assert marked(alice, sheet, other) == [False, True]
