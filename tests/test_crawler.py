"""Every page reachable from the navigation, every link and every button on it, answers
without an error, for an anonymous visitor, a user and a staff user (issue #12).

A Django test-client crawler: from the pages of the navigation it follows each link and
htmx GET target within the app, and submits each form (and each `hx-post` button) with
its own method and values, a small CSV for a file input. A POST runs in a transaction
rolled back afterwards, so a "Delete" does not hide the pages after it. Visits are
bounded: at most a few URLs per view and query shape, and a total cap.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import Resolver404, resolve

from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db

MAX_REQUESTS = 900
PER_SHAPE = 2  # URLs visited per (view, query keys)
SKIP_PREFIXES = ("/static/", "/ws/", "/logout/", "/admin/logout/")
HX = {"HTTP_HX_REQUEST": "true"}


@dataclass
class Form:
    method: str
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    submits: list[tuple[str, str]] = field(default_factory=list)
    has_submit: bool = False  # a form without a button (a read-only admin page) is not sent
    incomplete: bool = False  # a `required` field is empty: bad input, a 400 is its answer


class PageParser(HTMLParser):
    """Links, htmx targets and forms (with their current values) of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.hx_posts: list[str] = []
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._select_value: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if a.get("hx-get"):
            self.links.append(a["hx-get"])
        if a.get("hx-post"):
            self.hx_posts.append(a["hx-post"])
        if tag == "form":
            self._form = Form(a.get("method", "get").lower(), a.get("action", ""))
            self.forms.append(self._form)
        form = self._form
        if form is None or "disabled" in a:
            return
        if (tag == "button" and a.get("type", "submit") == "submit") or (
            tag == "input" and a.get("type", "").lower() in ("submit", "image")
        ):
            form.has_submit = True
        if tag == "input" and "required" in a and not a.get("value"):
            form.incomplete = True
        if tag == "input":
            kind, name = a.get("type", "text").lower(), a.get("name")
            if kind == "file" and name:
                form.files.append(name)
            elif kind == "submit" and name:
                form.submits.append((name, a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if name and "checked" in a:
                    form.fields.append((name, a.get("value", "on")))
            elif name and kind not in ("submit", "button", "image", "reset"):
                form.fields.append((name, a.get("value", "")))
        elif tag == "button" and a.get("name") and a.get("type", "submit") == "submit":
            form.submits.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._select_value = a.get("name"), None
        elif tag == "option" and self._select:
            if self._select_value is None or "selected" in a:
                self._select_value = a.get("value", "")
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select and self._form is not None:
            self._form.fields.append((self._select, self._select_value or ""))
            self._select = None
        elif tag == "textarea" and self._textarea and self._form is not None:
            self._form.fields.append((self._textarea, self._text))
            self._textarea = None


class Crawler:
    def __init__(self, client: Client, allowed_404: set[str]) -> None:
        self.client = client
        self.allowed_404 = allowed_404
        self.seen: set[tuple[str, str]] = set()
        self.shapes: Counter = Counter()
        self.requests = 0
        self.failures: list[str] = []
        self.queue: deque[tuple[str, str, str]] = deque()  # (url, from, via)

    def own(self, base: str, href: str) -> str | None:
        """The path and query of an app URL, or None for anything else."""
        if href.startswith(("#", "mailto:", "javascript:")):
            return None
        url = urlsplit(urljoin("http://testserver" + base, href))
        if url.netloc != "testserver" or url.path.startswith(SKIP_PREFIXES):
            return None
        try:
            match = resolve(url.path)
        except Resolver404:
            return None
        keys = ",".join(sorted({k for k, _ in parse_qsl(url.query, keep_blank_values=True)}))
        shape = (match.view_name, keys)
        target = url.path + (f"?{url.query}" if url.query else "")
        if ("GET", target) in self.seen:
            return None
        if self.shapes[shape] >= PER_SHAPE:
            return None
        self.shapes[shape] += 1
        return target

    def check(self, method: str, url: str, status: int, origin: str) -> None:
        if status < 400 or (status == 404 and url in self.allowed_404):
            return
        self.failures.append(f"{method} {url} -> {status} (from {origin})")

    def get(self, url: str, origin: str) -> None:
        self.seen.add(("GET", url))
        self.requests += 1
        response = self.client.get(url, **(HX if origin.endswith("hx") else {}))
        self.check("GET", url, response.status_code, origin)
        if response.status_code in (301, 302) and response.get("Location"):
            target = self.own(url, response["Location"])
            if target:
                self.queue.append((target, url, "redirect"))
            return
        if "text/html" not in response.get("Content-Type", ""):
            return
        page = PageParser()
        page.feed(
            b"".join(
                response.streaming_content if response.streaming else [response.content]
            ).decode()
        )
        for href in page.links:
            target = self.own(url, href)
            if target:
                self.queue.append((target, url, "link"))
        for form in page.forms:
            self.submit(url, form)
        for href in page.hx_posts:
            self.post(url, href, [], {})

    def submit(self, base: str, form: Form) -> None:
        if form.method == "get":
            action = urlsplit(urljoin("http://testserver" + base, form.action or base))
            query = "&".join(f"{k}={v}" for k, v in form.fields if k != "csrfmiddlewaretoken")
            target = self.own(base, action.path + (f"?{query}" if query else ""))
            if target:
                self.queue.append((target, base, "form"))
            return
        if not form.has_submit:
            return
        files = {
            name: SimpleUploadedFile("crawl.csv", b"name\nAda\n", "text/csv") for name in form.files
        }
        for submit in form.submits[:3] or [None]:
            fields = form.fields + ([submit] if submit else [])
            self.post(base, form.action or base, fields, files, refusable=form.incomplete)

    def post(self, base: str, href: str, fields, files, refusable: bool = False) -> None:
        """POST in a transaction rolled back after; `refusable`: a form sent with a
        required field empty, which a 400 answers rightly (any other 4xx or 5xx fails)."""
        url = urlsplit(urljoin("http://testserver" + base, href))
        if url.netloc != "testserver" or url.path.startswith(SKIP_PREFIXES):
            return
        target = url.path + (f"?{url.query}" if url.query else "")
        key = repr(sorted(k for k, _ in fields))
        if ("POST", target + key) in self.seen or self.requests >= MAX_REQUESTS:
            return
        self.seen.add(("POST", target + key))
        self.requests += 1
        data: dict[str, list] = {}
        for name, value in fields:
            data.setdefault(name, []).append(value)
        data.update({name: [upload] for name, upload in files.items()})
        with transaction.atomic():
            response = self.client.post(target, data)
            transaction.set_rollback(True)
        if refusable and response.status_code == 400:
            return
        self.check("POST", target, response.status_code, base)

    def run(self, start: list[str]) -> Crawler:
        self.queue.extend((url, "start", "nav") for url in start)
        while self.queue and self.requests < MAX_REQUESTS:
            url, origin, via = self.queue.popleft()
            if ("GET", url) in self.seen:
                continue
            self.get(url, origin)
        return self


@pytest.fixture
def seeded(user, other_user, staff_user):
    """A user with a sheet and a finished job; another user's job."""
    sheet = make_sheet(user, [["name", "email"], ["Ada", "ada@example.com"], ["Bob", "nope"]])
    finished = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    assert finished.status == Job.Status.SUCCEEDED
    others = submit_demo(other_user, n=3)
    other_sheet = make_sheet(other_user, [["a"], ["1"]], name="theirs.csv")
    return {"sheet": sheet, "job": finished, "others_job": others, "others_sheet": other_sheet}


def crawl(client: Client, seeded, start: list[str]) -> Crawler:
    other_job, other_sheet = seeded["others_job"], seeded["others_sheet"]
    allowed = {f"/jobs/{other_job.pk}/", f"/sheets/{other_sheet.pk}/"}
    return Crawler(client, allowed).run(start)


NAV = ["/", "/sheets/", "/jobs/", "/jobs/notifications/"]


def test_an_anonymous_visitor_meets_no_error(client, seeded):
    crawler = crawl(client, seeded, [*NAV, "/login/"])
    assert not crawler.failures, "\n".join(crawler.failures)
    assert crawler.requests >= 5


def test_a_user_meets_no_error_on_any_page_link_or_button(client, user, seeded):
    client.force_login(user)
    crawler = crawl(client, seeded, NAV)
    assert not crawler.failures, "\n".join(crawler.failures)
    visited = {url for method, url in crawler.seen if method == "GET"}
    assert f"/jobs/{seeded['job'].pk}/" in visited and seeded["sheet"].get_absolute_url() in visited
    assert any(url.startswith("/sheets/jobs/") for url in visited), "exports followed"
    assert {"/api/docs/", "/api/openapi.json"} <= visited, "the API docs, from the nav"
    assert any(method == "POST" for method, _ in crawler.seen), "buttons pressed"
    # Another user's objects are deliberate 404s, whichever way they are asked for.
    for url in (f"/jobs/{seeded['others_job'].pk}/", seeded["others_sheet"].get_absolute_url()):
        assert client.get(url).status_code == 404


def test_a_staff_user_meets_no_error_on_pages_and_admin(client, staff_user, seeded):
    client.force_login(staff_user)
    crawler = crawl(client, seeded, [*NAV, "/metrics/", "/admin/"])
    assert not crawler.failures, "\n".join(crawler.failures)
    visited = {url for method, url in crawler.seen if method == "GET"}
    assert f"/jobs/{seeded['others_job'].pk}/" in visited, "staff see everyone's jobs"
    assert any(url.startswith("/admin/jobs/job/") for url in visited)
