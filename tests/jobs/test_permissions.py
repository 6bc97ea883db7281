"""One permission rule on every front end: anyone acts on their own jobs; acting on
another user's job needs the model permission (change, or delete), for staff too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client

from jobs.cli.base import CliError
from jobs.models import Job
from tests.jobs.factories import fresh, submit_demo

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(django_user_model):
    """Staff who may look at everyone's jobs but not change them."""
    return django_user_model.objects.create_user("viewer", password="pw", is_staff=True)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_without_the_permission_cannot_cancel_anothers_job_anywhere(viewer, user):
    job = submit_demo(user, n=3)
    page = logged_in(viewer).post(f"/jobs/{job.pk}/cancel/", follow=True)
    assert "belongs to another user" in page.content.decode()
    api = logged_in(viewer).post(f"/api/jobs/{job.pk}/cancel/")
    assert api.status_code == 409 and "belongs to another user" in api.json()["error"]
    with pytest.raises(CliError, match="belongs to another user"):
        call_command("conveyor", "cancel", str(job.pk), "--user", "viewer")
    assert fresh(job).status == Job.Status.QUEUED


def test_the_model_permission_lets_staff_act_on_anothers_job(viewer, user):
    viewer.user_permissions.add(Permission.objects.get(codename="change_job"))
    job = submit_demo(user, n=3)
    response = logged_in(viewer).post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and fresh(job).status == Job.Status.CANCELLED
    deleting = logged_in(viewer).delete(f"/api/jobs/{job.pk}/")
    assert deleting.status_code == 409, "deleting needs delete_job"


def test_users_act_on_their_own_jobs_without_any_permission(user):
    job = submit_demo(user, n=3)
    assert logged_in(user).post(f"/api/jobs/{job.pk}/pause/").status_code == 200
    assert fresh(job).status == Job.Status.PAUSED
