"""The server's OPENAI_API_KEY goes only to OPENAI_BASE_URL. A user may type another base
URL only if the operator allows it (CONVEYOR_LLM_ALLOWED_BASE_URLS), and it never gets
the server's key; anything else is refused at validation, before a job exists. The
"hostile" endpoint is a local server that records each request's Authorization."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.test import Client

from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.fakes.openai_api import FakeOpenAI
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db

SERVER_KEY = "sk-server-secret"


@pytest.fixture
def server(settings) -> Iterator[FakeOpenAI]:
    """The operator's endpoint, with the operator's key."""
    fake = FakeOpenAI().start()
    fake.api_key = SERVER_KEY
    settings.CONVEYOR_LLM_BASE_URL = fake.base_url
    settings.CONVEYOR_LLM_API_KEY = SERVER_KEY
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = []
    settings.REDIS_URL = ""
    yield fake
    fake.stop()


@pytest.fixture
def hostile() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def sheet_of(user):
    return make_sheet(user, [["name"], ["Ann"], ["Bo"]])


def start_form(client: Client, sheet, base_url: str):
    data = {"processor": "llm", "opt_prompt": "Hi {name}", "opt_base_url": base_url}
    return client.post(f"/sheets/{sheet.pk}/start/", data)


def keys_seen(fake: FakeOpenAI) -> set[str]:
    return {call.headers.get("Authorization", "") for call in fake.calls}


def test_a_typed_url_not_allowed_is_refused_before_any_job(server, hostile, user):
    client = Client()
    client.force_login(user)
    response = start_form(client, sheet_of(user), hostile.base_url)
    assert response.status_code == 400
    assert "only sends rows to the LLM endpoints its operator allows" in response.content.decode()
    body = {"processor": "llm", "options": {"prompt": "Hi", "base_url": hostile.base_url}}
    api = client.post(
        "/api/jobs/",
        json.dumps({"kind": "sheets.process", "params": {"sheet_id": 1, **body}}),
        content_type="application/json",
    )
    assert api.status_code == 400
    assert not Job.objects.exists()
    assert hostile.calls == []


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:{server}@127.0.0.1:{hostile}/v1",
        "http://user:pw@127.0.0.1:{hostile}/v1",
        "http://127.0.0.1:{hostile}/v1",
        "ftp://127.0.0.1:{server}/v1",
        "http://127.0.0.1:{server}/v2",
    ],
)
def test_look_alike_urls_are_refused(server, hostile, user, spelling):
    ports = {"server": urlsplit(server.base_url).port, "hostile": urlsplit(hostile.base_url).port}
    client = Client()
    client.force_login(user)
    response = start_form(client, sheet_of(user), spelling.format(**ports))
    assert response.status_code == 400, spelling
    assert not Job.objects.exists()


def test_an_allowed_typed_url_never_gets_the_server_key(server, hostile, user, settings):
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = [hostile.base_url]
    sheet = sheet_of(user)
    options = {"prompt": "Hi {name}", "base_url": hostile.base_url + "/"}
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)[0])
    assert job.status == Job.Status.SUCCEEDED
    assert len(hostile.calls) == 2
    assert keys_seen(hostile) == {""}, "no Authorization header at all"
    assert server.calls == []

    options["api_key"] = "sk-users-own"
    Job.objects.all().delete()
    run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)[0])
    assert keys_seen(hostile) == {"", "Bearer sk-users-own"}


def test_the_server_endpoint_gets_the_server_key(server, user):
    sheet = sheet_of(user)
    options = {"prompt": "Hi {name}"}  # base URL left empty: the server's
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)[0])
    assert job.status == Job.Status.SUCCEEDED and job.failed == 0
    assert keys_seen(server) == {f"Bearer {SERVER_KEY}"}
