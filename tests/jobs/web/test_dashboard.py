"""The jobs dashboard and home as a user meets them (issue #12): status tabs with counts
and one word per status, sortable columns, Home's bulk actions, empty states with
something to click, closable toasts, and friendly 404 and 500 pages."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from jobs.actions.jobs import JOBS
from jobs.models import Job, Notification
from jobs.selectors import STATUS_GROUPS, status_counts
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, user) -> Client:
    client.force_login(user)
    return client


def _jobs(user, *statuses: str) -> list[Job]:
    jobs = [submit_demo(user, n=2, label=f"job {i}") for i, _ in enumerate(statuses)]
    for job, status in zip(jobs, statuses, strict=True):
        Job.objects.filter(pk=job.pk).update(status=status)
    return jobs


def test_status_tabs_show_counts_from_one_query(alice, user, other_user, django_assert_num_queries):
    _jobs(user, "running", "queued", "retrying", "succeeded", "succeeded", "failed")
    _jobs(other_user, "running")
    with django_assert_num_queries(1):
        counts = status_counts(Job.objects.filter(owner=user))
    assert counts == {
        "": 6,
        "active": 3,
        "running": 1,
        "queued": 2,
        "paused": 0,
        "succeeded": 2,
        "failed": 1,
        "cancelled": 0,
    }
    html = alice.get("/jobs/").content.decode()
    assert 'All <span class="count" id="tab-count-all">(6)</span>' in html
    assert 'Running <span class="count" id="tab-count-running">(1)</span>' in html
    assert 'Succeeded <span class="count" id="tab-count-succeeded">(2)</span>' in html
    filtered = alice.get("/jobs/?status=failed&q=job 5", HTTP_HX_REQUEST="true")
    html = filtered.content.decode()
    assert 'id="job-table"' in html and "<nav>" not in html, "the table part only"
    assert '<span class="count" id="tab-count-all" hx-swap-oob="true">(1)</span>' in html, (
        "the tabs' counts follow the other filters"
    )


def test_one_word_per_status_the_words_of_the_spec(alice, user):
    (done,) = _jobs(user, "succeeded")
    assert "completed" not in STATUS_GROUPS and "succeeded" in STATUS_GROUPS
    labels = [label for _, label in Job.Status.choices]
    assert labels == [
        "Queued",
        "Running",
        "Paused",
        "Retry waiting",
        "Succeeded",
        "Failed",
        "Cancelled",
    ]
    html = alice.get("/jobs/").content.decode()
    assert "Completed" not in html and "Succeeded" in html
    row = html[html.index(f'id="job-row-{done.pk}"') :]
    assert '<span class="status status-succeeded">Succeeded</span>' in row
    assert alice.get("/jobs/?status=completed").context["page"].object_list[0] == done, (
        "the old name still filters"
    )


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("", ["c", "b", "a"]),
        ("created", ["a", "b", "c"]),
        ("status", ["b", "c", "a"]),  # failed, queued, succeeded
        ("-status", ["a", "c", "b"]),
        ("progress", ["c", "b", "a"]),
        ("-progress", ["a", "b", "c"]),
        ("owner__password", ["c", "b", "a"]),
        ("-secret", ["c", "b", "a"]),
        ("--created", ["c", "b", "a"]),
    ],
)
def test_dashboard_columns_sort_and_unknown_keys_are_ignored(alice, user, sort, expected):
    a, b, c = _jobs(user, "succeeded", "failed", "queued")
    for job, label, processed in ((a, "a", 2), (b, "b", 1), (c, "c", 0)):
        Job.objects.filter(pk=job.pk).update(label=label, processed=processed)
    response = alice.get(f"/jobs/?sort={sort}")
    assert response.status_code == 200
    assert [job.label for job in response.context["page"].object_list] == expected


def test_sort_headers_are_links_that_keep_the_filters(alice, user):
    _jobs(user, "failed")
    html = alice.get("/jobs/?status=failed&sort=status").content.decode()
    assert 'href="?status=failed&amp;sort=-status"' in html and 'aria-sort="ascending"' in html
    assert 'href="?status=failed&amp;sort=created"' in html
    assert '<input type="hidden" name="sort" value="status">' in html


def test_home_job_table_has_the_dashboards_bulk_actions(alice, user):
    job, other = _jobs(user, "queued", "queued")
    html = alice.get("/").content.decode()
    assert 'id="bulk-form"' in html and f'form="bulk-form" aria-label="Select job {job.pk}"' in html
    for action in JOBS.values():
        assert f'value="{action.name}"' in html
    response = alice.post("/jobs/bulk/", {"action": "cancel", "ids": [job.pk], "next": "/"})
    assert response["Location"] == "/"
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {job.pk: "cancelled", other.pk: "queued"}


def test_empty_states_offer_something_to_click(alice, user):
    home = alice.get("/").content.decode()
    assert 'No jobs yet. <a href="/sheets/">Start one on a sheet</a>' in home
    assert 'href="/sheets/">Start one on a sheet</a>' in alice.get("/jobs/").content.decode()
    assert '<a href="/sheets/">Or start a job now</a>' in alice.get("/schedules/").content.decode()
    filtered = alice.get("/jobs/?status=failed").content.decode()
    assert 'No jobs match these filters. <a href="/jobs/">Show all jobs</a>' in filtered
    schedules = alice.get("/schedules/").content.decode()
    empty_row = schedules[schedules.index("No schedules yet") :]
    assert "conveyor schedule add" in empty_row and 'href="/sheets/"' in empty_row


def test_a_toast_has_a_close_button(alice, user):
    job = submit_demo(user, n=1)
    note = Notification.objects.create(user=user, job=job, message="Done", level="success")
    html = render_to_string("jobs/_toast.html", {"notification": note})
    assert '<button type="button" class="toast-close" aria-label="Close this notification">' in html


def test_a_batch_toast_is_marked_read_where_the_batch_is_shown(alice, user):
    from jobs.engine.services import Submission, batch_submit

    batch, _ = batch_submit(
        owner=user, submissions=[Submission(kind="demo.count", params={"n": 1})], label="b"
    )
    note = Notification.objects.create(user=user, batch=batch, message="b finished")
    toast = render_to_string("jobs/_toast.html", {"notification": note})
    # conveyor.js marks a toast read when the page shows its job or batch live.
    assert f'data-notification="{note.pk}"' in toast and f'data-batch="{batch.pk}"' in toast
    page = alice.get(f"/jobs/batches/{batch.pk}/").content.decode()
    assert f'class="card live-job" data-batch="{batch.pk}"' in page
    note.refresh_from_db()
    assert note.read_at is not None, "the batch page itself marks its toast read"
    Notification.objects.filter(pk=note.pk).update(read_at=None)
    response = alice.post(
        "/api/notifications/mark-read/", {"ids": [note.pk]}, content_type="application/json"
    )
    assert response.json()["marked"] == 1, "the id the script sends is marked read"


def test_not_found_is_a_friendly_page_with_a_way_home(alice, user, other_user, client):
    job = submit_demo(other_user, n=1)
    for url in ("/no/such/page/", f"/jobs/{job.pk}/"):
        response = alice.get(url)
        assert response.status_code == 404
        html = response.content.decode()
        assert "Page not found" in html and 'href="/">Go to the home page</a>' in html
        assert "<nav>" in html, "the site's navigation is there"


def test_server_error_page_needs_no_context_processors():
    request = RequestFactory().get("/boom/")
    response = server_error(request)
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html and 'href="/">Go to the home page</a>' in html
