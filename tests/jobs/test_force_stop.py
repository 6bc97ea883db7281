"""Force stop on every front end (issue 22): the job page, the API (`POST
/api/jobs/<id>/cancel/ {"force": true}`), the CLI (`conveyor cancel ID --force`) and the
admin ask the worker running a job to stop by force; a job no worker holds is cancelled
at once. What the worker then does (its heartbeat ends the job and its own process) is
tested against a real cluster in tests/reliability/test_task_edges.py."""

from __future__ import annotations

import pytest

from jobs.actions.jobs import JOBS
from jobs.models import Job
from tests.jobs.api.conftest import client_for
from tests.jobs.cli.test_verbs import conveyor
from tests.jobs.factories import fresh, messages, status_of, submit_demo
from tests.jobs.test_admin import act, running_on_a_worker, set_state

pytestmark = pytest.mark.django_db

S = Job.Status
FORCE = Job.Request.FORCE


def test_the_api_force_stops_a_running_job_and_cancels_a_queued_one_at_once(user):
    alice = client_for(user)
    running = running_on_a_worker(submit_demo(user, n=5))
    queued = submit_demo(user, n=5)
    response = alice.post(
        f"/api/jobs/{running.pk}/cancel/", {"force": True}, content_type="application/json"
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["requested"]) == ("running", "force")
    assert "Force stop requested by alice" in messages(running)
    response = alice.post(
        f"/api/jobs/{queued.pk}/cancel/", {"force": True}, content_type="application/json"
    )
    assert response.json()["status"] == "cancelled" and response.json()["requested"] == ""


@pytest.mark.parametrize("body", [{"force": "yes"}, {"force": 1}, {"hard": True}])
def test_a_bad_force_field_is_a_400(user, body):
    job = running_on_a_worker(submit_demo(user, n=5))
    response = client_for(user).post(
        f"/api/jobs/{job.pk}/cancel/", body, content_type="application/json"
    )
    assert response.status_code == 400 and fresh(job).requested == ""


def test_force_stopping_a_finished_job_is_a_409(user):
    job = set_state(submit_demo(user, n=5), S.SUCCEEDED)
    response = client_for(user).post(
        f"/api/jobs/{job.pk}/cancel/", {"force": True}, content_type="application/json"
    )
    assert response.status_code == 409 and "nothing to cancel" in response.json()["error"]


def test_the_cli_force_stops_with_cancel_force(staff_user):
    job = running_on_a_worker(submit_demo(staff_user, n=5))
    result = conveyor("cancel", str(job.pk), "--force")
    assert result.code == 0
    assert result.out == (
        f"Job #{job.pk} is running; force stop requested "
        "(its worker is stopped and replaced within seconds).\n"
    )
    assert fresh(job).requested == FORCE
    assert "(force stop requested)" in conveyor("status", str(job.pk)).out


def test_the_admin_force_stops_running_jobs_and_cancels_queued_ones(admin_client, user):
    running = running_on_a_worker(submit_demo(user, n=5))
    queued = submit_demo(user, n=5)
    done = set_state(submit_demo(user, n=5), S.FAILED)
    message = act(admin_client, "force_stop_jobs", [running, queued, done])
    assert message == (
        f"1 job cancelled, 1 job force-stopped within seconds; 1 skipped: "
        f"Job #{done.pk} is failed; there is nothing to cancel."
    )
    assert fresh(running).requested == FORCE and status_of(queued) == S.CANCELLED
    assert "Force stop requested by admin" in messages(running)


def test_the_job_page_offers_force_stop_for_a_running_job(user):
    alice = client_for(user)
    running = running_on_a_worker(submit_demo(user, n=5))
    queued = submit_demo(user, n=5)
    url = f"/jobs/{running.pk}/force-stop/"
    assert f'hx-post="{url}"' in alice.get(f"/jobs/{running.pk}/").content.decode()
    assert "force-stop" not in alice.get(f"/jobs/{queued.pk}/").content.decode()
    page = alice.post(url, HTTP_HX_REQUEST="true").content.decode()
    assert fresh(running).requested == FORCE
    assert "Stopping…" in page and f'hx-post="{url}"' not in page
    assert JOBS["force-stop"].applies(fresh(running))
    assert not JOBS["force-stop"].applies(queued)
