"""sheets.selectors: the reads pages, CLI and services share (which sheet a user may run,
a sheet's jobs and results)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from jobs.public import job_submit
from sheets import selectors
from sheets.names import KIND, entity_key
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db


@pytest.fixture
def sheet(user):
    return make_sheet(user, [["name", "email"], ["Ann", "not an address"], ["Bob", "b@x.io"]])


def test_a_sheet_is_run_by_its_owner_or_who_may_act_for_them(sheet, user, other_user):
    assert selectors.sheet_to_run(user, sheet.pk) == sheet
    assert selectors.sheet_to_run(other_user, sheet.pk) is None
    assert selectors.sheet_to_run(user, 10**9) is None
    other_user.is_staff = True  # sees every sheet, may not run them without the permission
    other_user.save()
    assert selectors.sheet_to_run(other_user, sheet.pk) is None
    other_user.user_permissions.add(Permission.objects.get(codename="add_job"))
    other_user = type(other_user).objects.get(pk=other_user.pk)  # permissions cached
    assert selectors.sheet_to_run(other_user, sheet.pk) == sheet


def test_a_sheets_jobs_are_its_owners_only_whatever_the_key(sheet, user, other_user):
    mine, _ = sheet_job_submit(sheet=sheet, owner=user, processor="clean")
    theirs, _ = job_submit(
        kind="demo.count", params={"n": 1}, owner=other_user, entity_key=entity_key(sheet)
    )
    assert list(selectors.sheet_all_jobs(sheet)) == [mine]
    assert selectors.current_job(sheet) == mine
    assert list(selectors.jobs_waiting_for_import(sheet)) == [mine]
    assert selectors.import_job(sheet) is None


def test_a_jobs_results_all_failed_or_latest_first(sheet, user):
    job, _ = sheet_job_submit(
        sheet=sheet, owner=user, processor="clean", options={"email_columns": ["email"]}
    )
    job = run_to_end(job)
    assert job.kind == KIND
    by_row = selectors.job_results(job, shown="", latest_first=False)
    assert [r.row_number for r in by_row] == [1, 2]
    failed = selectors.job_results(job, shown="errors", latest_first=False)
    assert [r.row_number for r in failed] == [r.row_number for r in by_row if r.failed]
    assert selectors.row_inputs(sheet, [2]) == {2: ["Bob", "b@x.io"]}
