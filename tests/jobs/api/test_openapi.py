"""The OpenAPI document (`/api/openapi.json`) and the docs page (`/api/docs/`), issue #27:
the document is valid OpenAPI 3.1, lists every URL of `jobs.api.urls` with each method
its view answers, states the version and both ways in; errors keep one JSON shape (with
`Retry-After` on a 429), and the docs page is linked from the navigation."""

from __future__ import annotations

import json

import pytest
from django.test import Client, RequestFactory
from openapi_spec_validator import validate

from jobs.api.errors import server_error
from jobs.api.openapi import api_patterns, document
from jobs.tokens import token_create
from tests.jobs.api.conftest import client_for

pytestmark = pytest.mark.django_db

HTML_PAGES = {"docs"}  # /api/docs/ is a page for people, not an operation


def test_the_document_is_valid_openapi_3_1(alice):
    response = alice.get("/api/openapi.json")
    assert response.status_code == 200
    body = response.json()
    validate(body)  # raises on an invalid document
    assert body["openapi"] == "3.1.0"
    assert body["info"]["version"] == "1"
    assert "version 2" in body["info"]["description"]


def test_every_api_url_and_method_is_documented():
    paths = document()["paths"]
    patterns = api_patterns()
    assert len(patterns) > 30
    for path, view, name in patterns:
        if name in HTML_PAGES:
            continue
        assert path in paths, f"{name} ({path}) is not in the document"
        methods = {method.upper() for method in paths[path]}
        assert methods == set(view.api_methods), f"{path}: documented {methods}"


def test_both_ways_in_errors_and_pagination_are_described(settings):
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["sheets.process", "demo.count"]
    body = document()
    schemes = body["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert "X-CSRFToken" in schemes["sessionAuth"]["description"]
    error = body["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "fields"}
    listing = body["paths"]["/api/jobs/"]["get"]
    assert {"page", "page_size"} <= {param["name"] for param in listing["parameters"]}
    assert listing["responses"]["400"] == {"$ref": "#/components/responses/400"}
    submit = body["paths"]["/api/jobs/"]["post"]
    assert body["components"]["responses"]["429"]["headers"]["Retry-After"]
    assert "429" in submit["responses"]
    kinds = body["components"]["schemas"]["JobSubmit"]["properties"]["kind"]["enum"]
    assert kinds == ["sheets.process", "demo.count"]
    assert "`demo.count`: Count to N" in body["info"]["description"]


def test_a_script_reads_the_document_with_its_token(user):
    secret = token_create(user=user)[1]
    response = Client().get("/api/openapi.json", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert "/api/jobs/{job_id}/" in response.json()["paths"]


def test_anonymous_callers_get_a_json_401_and_the_docs_page_sends_them_to_log_in():
    anonymous = Client()
    response = anonymous.get("/api/openapi.json")
    assert response.status_code == 401
    assert response.json()["error"].startswith("Authentication required")
    page = anonymous.get("/api/docs/")
    assert page.status_code == 302
    assert page["Location"].startswith("/login/")


def test_the_docs_page_is_in_the_navigation_and_loads_swagger_ui_from_static(user):
    home = client_for(user).get("/")
    assert b'href="/api/docs/"' in home.content
    page = client_for(user).get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert 'data-schema-url="/api/openapi.json"' in html
    assert "<script>" not in html  # no inline script: the CSP allows only our files


def test_over_the_quota_is_a_429_with_retry_after(alice, settings):
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]
    job = {"kind": "demo.count"}
    assert alice.post("/api/jobs/", job, "application/json").status_code == 201
    response = alice.post("/api/jobs/", job, "application/json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "active jobs" in response.json()["error"]


@pytest.mark.parametrize("events", [{}, 0, False, {"job.failed": True}])
def test_email_notices_refuse_what_is_not_a_list_of_events(alice, events):
    """Before #27 any falsy value (`{}`, `0`) was taken for "no events" and answered
    200: a client's typo silently opted out. Now only `[]`, `""` or null/absent do."""
    response = alice.put("/api/notices/email/", {"events": events}, "application/json")
    assert response.status_code == 400
    assert "events" in response.json()["fields"]
    assert alice.put("/api/notices/email/", {"events": []}, "application/json").status_code == 200


def test_errors_under_api_are_json_never_an_html_page(alice):
    """A newline in a URL matched no pattern, not even the JSON 404's, and Django's HTML
    page answered (found by the fuzzer); a bad Host header is refused before any view."""
    for path in ["/api/jobs/by-session/a%0Ab/", "/api/nothing%0A/", "/api/jobs"]:
        response = alice.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json()["error"].startswith("No API endpoint at")
    refused = alice.get("/api/jobs/", HTTP_HOST="evil.example")
    assert refused.status_code == 400
    assert refused.json() == {"error": "Bad request."}
    assert alice.get("/jobs/", HTTP_HOST="evil.example")["Content-Type"].startswith("text/html")


def test_a_crash_under_api_answers_json_and_a_page_answers_html():
    api = server_error(RequestFactory().get("/api/jobs/"))
    assert api.status_code == 500
    assert json.loads(api.content)["error"].startswith("Internal server error")
    page = server_error(RequestFactory().get("/jobs/"))
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


# Bodies checked by their models (#27): the words a client gets for a bad type, a bad
# length or an unknown choice are the model's, the same in every body, and the document
# states the same rule. Before, schedules, webhooks, e-mail notices and action options
# each had hand-made words ("must be a string of 5 fields", "must be an IANA time zone
# name", "give the URL to call", "unknown event x"); what only the server knows (a valid
# cron, a known zone, the outbound guard) keeps its own words, checked after the model.
WORDED_BY_THE_MODEL = [
    ("post", "/api/schedules/", {"kind": "demo.count", "cron": 7}, "cron", "must be a string"),
    (
        "post",
        "/api/schedules/",
        {"kind": "demo.count", "cron": "0 7 * * *", "timezone": None},
        "timezone",
        "must be a string",
    ),
    (
        "post",
        "/api/schedules/",
        {"kind": "demo.count", "every": True},
        "every",
        "must be an integer or a string",
    ),
    (
        "post",
        "/api/schedules/",
        {"kind": "demo.count", "every": 60, "overlap": "sometimes"},
        "overlap",
        "must be one of 'skip'",
    ),
    (
        "post",
        "/api/schedules/",
        {"kind": "demo.count", "every": 60, "enabled": "yes"},
        "enabled",
        "must be true or false",
    ),
    ("post", "/api/webhooks/", {"events": ["job.failed"]}, "url", "is required"),
    (
        "post",
        "/api/webhooks/",
        {"url": "https://example.com/" + "x" * 2000, "events": ["job.failed"]},
        "url",
        "must be at most 2000 characters",
    ),
    (
        "post",
        "/api/webhooks/",
        {"url": "https://example.com/x", "events": ["job.failed", "job.done"]},
        "events",
        "item 1 must be one of 'job.succeeded', 'job.failed', 'job.cancelled', "
        "'batch.finished' or 'schedule.failed'",
    ),
    ("put", "/api/notices/email/", {"events": {}}, "events", "must be a list or a string"),
    ("put", "/api/notices/email/", {"events": ["nope"]}, "events", "item 0 must be one of"),
]


@pytest.mark.parametrize(("method", "url", "body", "field", "words"), WORDED_BY_THE_MODEL)
def test_bodies_are_checked_by_the_models_the_document_shows(
    alice, method, url, body, field, words
):
    response = getattr(alice, method)(url, body, "application/json")
    assert response.status_code == 400, response.content
    assert response.json()["fields"][field].startswith(words), response.json()
    assert field in response.json()["error"]


def test_an_action_option_is_true_or_false_and_null_is_false(alice, user):
    from jobs.engine.services import job_submit

    job, _ = job_submit(kind="demo.count", owner=user, params={"n": 1})
    refused = alice.post(f"/api/jobs/{job.pk}/cancel/", {"force": "yes"}, "application/json")
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "Invalid options: force: must be true or false",
        "fields": {"force": "must be true or false"},
    }
    # The document says `boolean | null`; null is the option not set: a plain cancel.
    cancelled = alice.post(f"/api/jobs/{job.pk}/cancel/", {"force": None}, "application/json")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"


def test_a_webhook_reports_every_bad_field_at_once(alice, settings):
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = []
    body = {"url": "ftp://example.com/x", "events": ["job.exploded"]}
    response = alice.post("/api/webhooks/", body, "application/json")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"url", "events"}
    assert response.json()["error"].startswith("Invalid webhook: ")


@pytest.mark.parametrize(
    ("label", "words"), [(3, "must be a string"), ("x" * 201, "must be at most 200 characters")]
)
def test_a_batch_label_is_checked_by_the_batch_model(alice, label, words):
    body = {"label": label, "jobs": [{"kind": "demo.count"}]}
    response = alice.post("/api/batches/", body, "application/json")
    assert response.status_code == 400
    assert response.json() == {"error": f"label: {words}", "fields": {"label": words}}
    assert alice.get("/api/batches/").json()["count"] == 0
