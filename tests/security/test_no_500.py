"""No URL answers 500 to junk: every URL pattern (a few of the admin's), for an anonymous
visitor, a user and staff, with junk in each path parameter, in the query string and in
a POSTed form. A junk request gets a 4xx (or a page), never a server error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from jobs.engine.services import job_submit
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db

JUNK = ["abc", "-1", "0", "99999999999999999999", "1.5", "ünïcødé", "%00", "\x00", "", "'\"",
        "2024-13-45", "#99999999999999999999", "²"]  # fmt: skip
QUERY_NAMES = [
    "page", "page_size", "job", "errors", "order", "processor", "status", "kind", "q",
    "owner", "created_after", "created_before", "since", "unread", "every", "window",
    "live_id", "next", "action", "ids", "o", "p", "all", "e", "from", "to", "worksheet",
    "select_across", "columns", "start_row", "row_count", "priority", "google_url",
]  # fmt: skip
ADMIN_KEPT = ["", "jobs/job/", "jobs/job/<id>/change/", "sheets/sheet/", "sheets/sheet/<id>/change/",
              "sheets/rowresult/", "django_q/ormq/", "jobs/failedjob/"]  # fmt: skip
HEALTH_DOWN = ("healthz", 503)  # no cluster runs here: "unavailable" is the right answer
PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def routes(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[str]:
    """Every route as a path template like 'sheets/<int:sheet_id>/results/'."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        part = str(entry.pattern).lstrip("^").rstrip("$").replace("\\Z", "")
        if isinstance(entry, URLResolver):
            if getattr(entry, "app_name", None) == "admin":
                yield from (f"{prefix}{part}{kept}" for kept in ADMIN_KEPT)
            else:
                yield from routes(entry, prefix + part)
        elif isinstance(entry, URLPattern):
            yield prefix + part


def fill(route: str, value: str) -> str:
    return "/" + PARAMETER.sub(lambda _: quote(value, safe=""), route.replace("<id>", "<x>"))


def junk_queries() -> Iterator[str]:
    for value in JUNK:
        yield urlencode(dict.fromkeys(QUERY_NAMES, value))


@pytest.fixture
def world(user, staff_user):
    """Real objects, so junk also reaches views past their 404 checks."""
    sheet = make_sheet(user, [["name", "email"], ["Ann", "ann@example.com"]])
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="clean")
    other, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, entity_key="sheet:abc")
    return {"ids": [str(sheet.pk), str(job.pk), str(other.pk)], "user": user, "staff": staff_user}


def client_for(world, role: str) -> Client:
    client = Client(raise_request_exception=False)
    if role != "anonymous":
        client.force_login(world[role])
    return client


def requests(world, method: str) -> Iterator[tuple[str, str, str, dict]]:
    """(template, method, url, form data) for every route and junk value."""
    for template in sorted(set(routes())):
        values = JUNK + world["ids"] if PARAMETER.search(template) else [""]
        for value in values:
            path = fill(template, value)
            # Junk queries and forms where the path reaches a view's own code: real ids (a
            # junk id is refused before any query parameter or field is read) or none.
            reaches_the_view = value in world["ids"] or value == ""
            if method == "get":
                yield template, "get", path, {}
                if reaches_the_view:  # unless the path alone is "not found" (see the test)
                    yield from ((template, "get", f"{path}?{q}", {}) for q in junk_queries())
            else:
                forms = JUNK if reaches_the_view else JUNK[:1]
                yield from ((template, "post", path, dict.fromkeys(QUERY_NAMES, v)) for v in forms)


@pytest.mark.parametrize("role", ["anonymous", "user", "staff"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_no_url_answers_500_to_junk(world, method, role):
    """One test per method and role: each walks every route (a few thousand requests)."""
    assert "sheets/<int:sheet_id>/results/" in set(routes())
    failures = []
    client = client_for(world, role)
    not_found: set[str] = set()  # paths a view refused: their ids (of another kind) lead nowhere
    for template, verb, url, data in requests(world, method):
        path = url.split("?", 1)[0]
        if "?" in url and path in not_found:
            continue  # ids name a sheet or a job: on a route for the other, junk goes no further
        status = getattr(client, verb)(url, data).status_code
        if status == 404 and "?" not in url:
            not_found.add(path)
        if status >= 500 and (template, status) != HEALTH_DOWN:
            failures.append(f"{status} {role} {verb.upper()} {url[:100]} {data or ''}")
    assert not failures, f"{len(failures)} server errors, e.g.:\n" + "\n".join(failures[:20])


def test_results_with_a_junk_job_id(world):
    client = Client(raise_request_exception=False)
    client.force_login(world["user"])
    sheet_id = world["ids"][0]
    assert client.get(f"/sheets/{sheet_id}/results/?job=abc").status_code < 500


def test_a_job_with_a_non_numeric_sheet_key_has_a_page(world):
    client = Client(raise_request_exception=False)
    client.force_login(world["user"])
    other = world["ids"][2]
    assert client.get(f"/jobs/{other}/").status_code == 200
    assert client.get("/jobs/").status_code == 200
