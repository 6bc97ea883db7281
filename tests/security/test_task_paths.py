"""A task queue opened to the API or CLI runs only @task functions the server has
loaded: a user naming some other dotted path gets a 400, and the web process does not
import that module to find out."""

from __future__ import annotations

import sys

import pytest
from django.test import Client

from jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(settings, user) -> Client:
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["tasks.default"]
    client = Client()
    client.force_login(user)
    return client


def submit(api: Client, path: str):
    body = {"kind": "tasks.default", "params": {"task": path}}
    return api.post("/api/jobs/", body, content_type="application/json")


def test_a_path_in_a_module_never_loaded_is_refused_without_importing_it(api):
    sys.modules.pop("this", None)  # the Zen of Python: imported, it prints itself
    answer = submit(api, "this.s")
    assert answer.status_code == 400 and "unknown here" in answer.content.decode()
    assert "this" not in sys.modules and not Job.objects.exists()


def test_a_loaded_apps_task_is_accepted_and_a_plain_function_refused(api):
    assert submit(api, "tests.plugin_app.tasks.add").status_code == 201
    refused = submit(api, "tests.plugin_app.tasks.not_a_task")
    assert refused.status_code == 400 and "is not a task" in refused.content.decode()
