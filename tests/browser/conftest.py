"""Browser journeys: headless Chromium (Playwright, /usr/bin/chromium) against a real
`daphne` web process and a real `qcluster`, both on the test database.

Playwright's sync API keeps an event loop running in the test thread, which Django's
ORM takes for async code; the tests' own ORM calls are plain sync code, so the check
is switched off for these tests only (DJANGO_ALLOW_ASYNC_UNSAFE).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from tests.conftest import CHROMIUM, require
from tests.daphne import Daphne
from tests.support.processes import wait_for

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    require(shutil.which(CHROMIUM) is not None, f"Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - requirements-dev.txt installs it
        require(False, "the playwright package")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def web(transactional_db) -> Iterator[Daphne]:
    """A daphne process serving the app (and its live relay) on a free port."""
    server = Daphne().start()
    yield server
    server.stop()


@pytest.fixture
def open_page(chromium, web) -> Iterator[Callable]:
    """open_page(user, path): a page logged in as `user`, loaded, its live socket open."""
    contexts = []

    def open_as(user, path: str = "/", wait_live: bool = True):
        client = Client()
        client.force_login(user)
        context = chromium.new_context(base_url=web.url)
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": web.url}]
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(path)
        if wait_live:
            wait_until_live(page)
        return page

    yield open_as
    for context in contexts:
        context.close()


def wait_until_live(page) -> None:
    """The websocket is open: pushes from now on reach the page."""
    page.wait_for_selector("body[data-live='open']", state="attached")


def wait_for_js(page, expression: str, timeout: float = TIMEOUT_MS / 1000) -> None:
    """Poll a JavaScript expression from the test until it is truthy. Playwright's own
    `wait_for_function` evaluates strings inside the page, which the CSP (no eval) refuses."""
    wait_for(lambda: page.evaluate(f"() => ({expression})"), timeout=timeout, what=expression)
