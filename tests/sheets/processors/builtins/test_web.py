"""The `web` processor against a small fake website (sheets/processors/builtins/web.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sheets.processors import OptionsError, get_processor, run_rows
from tests.fakes.website import HOME_TEXT, FakeSite
from tests.support.processes import free_port, wait_for

NEVER = lambda: False  # noqa: E731
WEB = get_processor("web")


@pytest.fixture(autouse=True)
def web_settings(settings):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = True
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = []
    settings.CONVEYOR_WEB_MAX_ATTEMPTS = 2
    settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS = 0.02
    return settings


@pytest.fixture
def second_site() -> Iterator[FakeSite]:
    """The same site on 127.0.0.2: another loopback address, as a redirect target."""
    site = FakeSite(host="127.0.0.2").start()
    yield site
    site.stop()


def fetch(*urls: str, **raw) -> list:
    """Outcomes of fetching `urls` (one row each, column "link"), in row order."""
    options = WEB.validate_options({"timeout": "2", **raw}, ["link", "company"])
    rows = [(i, {"link": url, "company": "Acme"}) for i, url in enumerate(urls, start=1)]
    outcomes = run_rows(WEB, options, rows, should_stop=NEVER)
    return sorted(outcomes, key=lambda outcome: outcome.number)


def test_extracts_status_title_description_and_main_text_length(fake_site):
    [page] = fetch(fake_site.url("/"))
    assert page.error == ""
    assert page.outputs == {
        "status": 200,
        "final_url": fake_site.url("/"),
        "title": "Acme Widgets",
        "description": "Widgets for every occasion.",
        "text_length": len(HOME_TEXT),  # the main text only: no nav, script or style
    }


def test_a_page_without_main_counts_its_body_text(fake_site):
    [page] = fetch(fake_site.url("/plain"))
    assert page.outputs["title"] == "Plain page"
    assert page.outputs["text_length"] == len("Just a body.")
    assert page.outputs["description"] == ""


def test_the_charset_in_the_header_is_honoured(fake_site):
    [page] = fetch(fake_site.url("/latin1"))
    assert page.outputs["title"] == "Café déjà vu"


def test_redirects_are_followed_to_the_final_url(fake_site):
    [page] = fetch(fake_site.url("/redirect/3"))
    assert page.error == ""
    assert page.outputs["final_url"] == fake_site.url("/")
    assert page.outputs["title"] == "Acme Widgets"
    assert fake_site.requests == ["/redirect/3", "/redirect/2", "/redirect/1", "/"]


def test_more_redirects_than_allowed_is_a_row_error(fake_site):
    [page] = fetch(fake_site.url("/redirect/3"), max_redirects="2")
    assert page.error == "too many redirects (more than 2)"
    assert fake_site.requests == ["/redirect/3", "/redirect/2", "/redirect/1"]


def test_a_redirect_loop_is_a_row_error(fake_site):
    [page] = fetch(fake_site.url("/loop/a"))
    assert page.error == f"redirect loop: redirected back to {fake_site.url('/loop/a')}"


def test_an_http_error_status_is_a_result_not_a_row_error(fake_site):
    [page] = fetch(fake_site.url("/missing"))
    assert page.error == ""
    assert page.outputs["status"] == 404
    assert page.outputs["title"] == "Not Found"


@pytest.mark.parametrize("path", ["/data.json", "/report.pdf"])
def test_other_content_fills_only_status_and_final_url(fake_site, path):
    [page] = fetch(fake_site.url(path))
    assert page.outputs == {
        "status": 200,
        "final_url": fake_site.url(path),
        "title": "",
        "description": "",
        "text_length": "",
    }


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
def test_a_page_over_the_size_cap_is_a_row_error_without_reading_it_all(fake_site, path):
    began = time.monotonic()
    [page] = fetch(fake_site.url(path), max_bytes="100000")
    assert page.error == (
        "the page is larger than max_bytes (100,000 bytes); raise it to read this page"
    )
    assert time.monotonic() - began < 2


def test_a_transient_server_error_is_retried(fake_site):
    [page] = fetch(fake_site.url("/flaky"))
    assert (page.error, page.attempts) == ("", 2)
    assert page.outputs["title"] == "Recovered"


def test_a_persistent_server_error_is_the_result_after_retries(fake_site):
    fake_site.flaky_failures = 10
    [page] = fetch(fake_site.url("/flaky"))
    assert (page.error, page.outputs["status"], page.attempts) == ("", 503, 2)


def test_a_slow_page_times_out_as_a_row_error(fake_site):
    began = time.monotonic()
    [page] = fetch(fake_site.url("/slow"), timeout="0.3")
    assert (
        page.error
        == f"timed out (ReadTimeout); gave up after 2 attempts ({fake_site.url('/slow')})"
    )
    assert page.attempts == 2
    assert time.monotonic() - began < 2


def test_stopping_hangs_up_on_slow_pages(fake_site):
    options = WEB.validate_options({"timeout": "30"}, ["link"])
    rows = [(i, {"link": fake_site.url("/slow")}) for i in range(1, 4)]
    began = time.monotonic()
    outcomes = run_rows(WEB, options, rows, should_stop=lambda: len(fake_site.requests) >= 3)
    assert outcomes == []
    assert time.monotonic() - began < 1.5
    wait_for(lambda: fake_site.dropped == 3, timeout=3, what="the site to see 3 hang-ups")


def test_a_url_without_scheme_is_fetched_over_https(fake_site):
    # The fake site speaks plain HTTP, so the https:// attempt fails its TLS handshake.
    [page] = fetch(f"127.0.0.1:{fake_site.port}/plain")
    assert page.error.startswith("ConnectError: ")
    assert page.error.endswith(f"(https://127.0.0.1:{fake_site.port}/plain)")


@pytest.mark.parametrize(
    ("cell", "error"),
    [
        ("", "no URL in this row"),
        ("   ", "no URL in this row"),
        ("ftp://files.example.com/a", "cannot fetch ftp:// URLs, only http:// and https://"),
    ],
)
def test_unusable_cells_are_row_errors(cell, error):
    [page] = fetch(cell)
    assert page.error == error


def test_a_closed_port_is_a_row_error_after_retries():
    [page] = fetch(f"http://127.0.0.1:{free_port()}/")
    assert page.error.startswith("ConnectError: ")
    assert page.attempts == 2


# --- private addresses ------------------------------------------------------------------


def test_private_addresses_are_refused_unless_allowed(fake_site, settings):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = False
    by_ip, by_name = fetch(fake_site.url("/"), f"http://localhost:{fake_site.port}/")
    assert by_ip.error == (
        "refused to connect to 127.0.0.1: a loopback address "
        "(private addresses are off; see CONVEYOR_WEB_ALLOW_PRIVATE)"
    )
    assert by_name.error.startswith("refused to connect to localhost (")
    assert by_ip.attempts == by_name.attempts == 1
    assert fake_site.requests == []


def test_every_redirect_hop_is_checked(fake_site, second_site, settings):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = False
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    target = second_site.url("/plain")
    [page] = fetch(fake_site.url(f"/to?url={target}"))
    assert page.error == (
        f"redirected to {target}; refused to connect to 127.0.0.2: a loopback address "
        "(private addresses are off; see CONVEYOR_WEB_ALLOW_PRIVATE)"
    )
    assert fake_site.requests == ["/to"]
    assert second_site.requests == []

    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    [page] = fetch(fake_site.url(f"/to?url={target}"))
    assert (page.error, page.outputs["final_url"]) == ("", target)
    assert second_site.requests == ["/plain"]


# --- options ------------------------------------------------------------------------------


def test_the_url_column_defaults_to_the_first_column():
    assert WEB.validate_options({}, ["Website", "Name"])["url_column"] == "Website"
    assert WEB.validate_options({"url_column": "name"}, ["Website", "Name"])["url_column"] == "Name"


def test_an_unknown_url_column_is_an_option_error():
    with pytest.raises(OptionsError) as caught:
        WEB.validate_options({"url_column": "homepage"}, ["url"])
    assert caught.value.errors == {"url_column": "No column 'homepage'. Columns are: url."}


def test_outputs_are_the_page_facts():
    options = WEB.validate_options({}, ["url"])
    assert WEB.output_columns(options, ["url"]) == [
        "status",
        "final_url",
        "title",
        "description",
        "text_length",
    ]


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("[2002:7f00:1::1]", "loopback"),  # 6to4 of 127.0.0.1
        ("[2002:a9fe:a9fe::1]", "private"),  # 6to4 of the cloud metadata address
        ("[64:ff9b::a9fe:a9fe]", "private"),  # NAT64 of the metadata address
        ("[2002:a00:1::1]", "private"),  # 6to4 of 10.0.0.1
        ("192.0.0.8", "non-public"),  # an IETF protocol assignment, not a web site
    ],
)
def test_addresses_that_carry_or_hide_an_internal_one_are_refused(host, kind, settings):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = False
    [page] = fetch(f"http://{host}:9/")
    assert page.error.startswith(f"refused to connect to {host.strip('[]')}: a {kind} address")
