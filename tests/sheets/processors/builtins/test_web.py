"""The `web` processor against small fake websites (sheets/processors/builtins/web/)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from sheets.processors import OptionsError, RowStream, get_processor, run_rows
from sheets.processors.builtins.web import hosts
from sheets.processors.builtins.web.robots import RobotsCache
from tests.fakes.website import (
    HOME_EMAILS,
    HOME_PHONES,
    HOME_SOCIAL,
    HOME_TEXT,
    LONG_TEXT,
    FakeSite,
)
from tests.support.processes import free_port, wait_for

NEVER = lambda: False  # noqa: E731
WEB = get_processor("web")


@pytest.fixture(autouse=True)
def web_settings(settings):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = True
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = []
    settings.CONVEYOR_WEB_MAX_ATTEMPTS = 2
    settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS = 0.02
    forget_hosts(settings)
    return settings


def forget_hosts(settings) -> None:
    """No robots.txt, slot or pause of an earlier test's site (a port may come again)."""
    RobotsCache._local.clear()
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter("conveyor-web:*"):
            client.delete(key)
        client.close()


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


def test_extracts_the_main_text_and_the_page_facts(fake_site):
    [page] = fetch(fake_site.url("/"))
    assert page.error == ""
    assert page.outputs == {
        "status": 200,
        "final_url": fake_site.url("/"),
        "title": "Acme Widgets",
        "description": "Widgets for every occasion.",
        "text_length": len(HOME_TEXT),
        "text": HOME_TEXT,  # the main text only: no nav, script, style or footer
        "lang": "en-GB",
        "emails": HOME_EMAILS,  # the mailto: link's and the text's, normalised like clean
        "phones": HOME_PHONES,  # the tel: link's, then the text's, E.164
        "social": HOME_SOCIAL,  # profiles, not the share button
    }


def test_select_lines_become_columns_and_outputs_keeps_the_ones_named(fake_site):
    select = "address = footer .address\nlogo = img.logo @src\nmissing = .nothing-here"
    [page] = fetch(fake_site.url("/"), select=select, outputs="text, address, logo, missing")
    assert page.outputs == {
        "text": HOME_TEXT,
        "address": "1 Widget Way, Leeds",
        "logo": "/logo.png",
        "missing": "",
    }
    options = WEB.validate_options({"select": select, "outputs": "title, logo"}, ["url"])
    assert WEB.output_columns(options, ["url"]) == ["title", "logo"]


def test_the_text_is_cut_at_max_text_chars_on_a_word_boundary(fake_site):
    [page] = fetch(fake_site.url("/long"), max_text_chars="100", outputs="text, text_length")
    assert page.outputs["text"] == LONG_TEXT[:100].rsplit(" ", 1)[0]
    assert page.outputs["text_length"] == len(LONG_TEXT)


def test_a_page_without_main_counts_its_body_text(fake_site):
    [page] = fetch(fake_site.url("/plain"))
    assert page.outputs["title"] == "Plain page"
    assert page.outputs["text_length"] == len("Just a body.")
    assert page.outputs["text"] == "Just a body."
    assert page.outputs["description"] == page.outputs["lang"] == page.outputs["emails"] == ""


def test_the_charset_in_the_header_is_honoured(fake_site):
    [page] = fetch(fake_site.url("/latin1"))
    assert page.outputs["title"] == "Café déjà vu"


def test_redirects_are_followed_to_the_final_url(fake_site):
    [page] = fetch(fake_site.url("/redirect/3"))
    assert page.error == ""
    assert page.outputs["final_url"] == fake_site.url("/")
    assert page.outputs["title"] == "Acme Widgets"
    assert fake_site.requests == ["/robots.txt", "/redirect/3", "/redirect/2", "/redirect/1", "/"]


def test_more_redirects_than_allowed_is_a_row_error(fake_site):
    [page] = fetch(fake_site.url("/redirect/3"), max_redirects="2")
    assert page.error == "too many redirects (more than 2)"
    assert fake_site.requests == ["/robots.txt", "/redirect/3", "/redirect/2", "/redirect/1"]


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
        **dict.fromkeys(["title", "description", "text_length", "text", "lang"], ""),
        **dict.fromkeys(["emails", "phones", "social"], ""),
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
    options = WEB.validate_options({"timeout": "30", "per_host": "3"}, ["link"])
    rows = [(i, {"link": fake_site.url("/slow")}) for i in range(1, 4)]
    began = time.monotonic()
    outcomes = run_rows(
        WEB, options, rows, should_stop=lambda: fake_site.requests.count("/slow") >= 3
    )
    assert outcomes == []
    assert time.monotonic() - began < 1.5
    wait_for(lambda: fake_site.dropped == 3, timeout=3, what="the site to see 3 hang-ups")


def test_a_url_without_scheme_is_fetched_over_https(fake_site):
    # The fake site speaks plain HTTP, so the https:// attempt fails its TLS handshake.
    [page] = fetch(f"127.0.0.1:{fake_site.port}/plain", robots="no")
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
    assert fake_site.requests == ["/robots.txt", "/to"]
    assert second_site.requests == []

    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    [page] = fetch(fake_site.url(f"/to?url={target}"))
    assert (page.error, page.outputs["final_url"]) == ("", target)
    assert second_site.requests == ["/robots.txt", "/plain"]


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
        "text",
        "lang",
        "emails",
        "phones",
        "social",
    ]


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        (
            {"select": "price .price", "outputs": "text, prices"},
            {
                "select": "line 1: write name = CSS selector (or selector @attribute)",
                "outputs": "No output 'prices'. Outputs are: status, final_url, title, "
                "description, text_length, text, lang, emails, phones, social.",
            },
        ),
        ({"select": "title = h1"}, {"select": "line 1: the column 'title' is already an output"}),
        ({"select": "x = p[["}, {"select": "line 1: 'p[[' is not a valid CSS selector"}),
        (
            {"max_text_chars": "40000"},
            {"max_text_chars": "Must be at most 30,000 characters (CONVEYOR_WEB_MAX_TEXT_CHARS)."},
        ),
        ({"per_host": "0"}, {"per_host": "Must be at least 1."}),
        ({"per_host": "100"}, {"per_host": "Must be at most 16."}),
    ],
)
def test_bad_options_say_what_is_wrong(raw, errors):
    with pytest.raises(OptionsError) as caught:
        WEB.validate_options(raw, ["url"])
    assert caught.value.errors == errors


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


# --- manners ------------------------------------------------------------------------------


@pytest.fixture
def three_hosts() -> Iterator[list[FakeSite]]:
    """Three sites on 127.0.0.1-3: three hosts, as far as per-host limits go."""
    sites = [FakeSite(host=f"127.0.0.{n}").start() for n in (1, 2, 3)]
    yield sites
    for site in sites:
        site.stop()


def test_robots_txt_disallow_is_honoured_and_the_path_never_requested(fake_site):
    fake_site.robots = "User-agent: *\nDisallow: /plain\n"
    home, plain, redirected = fetch(
        fake_site.url("/"), fake_site.url("/plain"), fake_site.url("/to?url=/plain")
    )
    assert home.error == ""
    robots = fake_site.url("/robots.txt")
    assert plain.error == (
        f"{robots} disallows {fake_site.url('/plain')} for Conveyor; set robots=no to fetch it anyway"
    )
    assert redirected.error == plain.error  # every hop is checked
    assert "/plain" not in fake_site.requests
    assert fake_site.requests.count("/robots.txt") == 1  # once per host, not per row

    [ignored] = fetch(fake_site.url("/plain"), robots="no")
    assert (ignored.error, ignored.outputs["title"]) == ("", "Plain page")


def test_rules_for_the_product_token_apply(fake_site):
    fake_site.robots = "User-agent: *\nDisallow: /\n\nUser-agent: Conveyor\nAllow: /\n"
    [page] = fetch(fake_site.url("/plain"))
    assert page.error == ""


def test_a_robots_txt_that_fails_with_5xx_disallows_the_host(fake_site):
    fake_site.robots = "500"
    [page] = fetch(fake_site.url("/plain"))
    assert page.error.endswith("(robots.txt answered HTTP 500); set robots=no to fetch it anyway")
    assert "/plain" not in fake_site.requests


def test_each_host_sees_at_most_per_host_requests_at_once(three_hosts):
    for site in three_hosts:
        site.latency = 0.1
    urls = [site.url(f"/?n={n}") for n in range(6) for site in three_hosts]
    outcomes = fetch(*urls, concurrency="16", per_host="2")
    assert [outcome.error for outcome in outcomes] == [""] * len(urls)
    assert all(site.peak <= 2 for site in three_hosts)
    assert [site.requests.count("/") for site in three_hosts] == [6, 6, 6]


def test_per_host_delay_spaces_the_requests_to_a_host(fake_site):
    urls = [fake_site.url(f"/?n={n}") for n in range(3)]
    outcomes = fetch(*urls, per_host_delay="0.3", per_host="1")
    assert all(outcome.error == "" for outcome in outcomes)
    starts = fake_site.times[1:]  # after robots.txt, on the connection it opened
    # Spaced 0.3 s when sent; a lower bound with room for the request's trip.
    assert all(later - earlier >= 0.2 for earlier, later in zip(starts, starts[1:], strict=False))


def test_retry_after_on_429_pauses_the_whole_host(fake_site):
    fake_site.busy_retry_after = "1"
    busy, other = fetch(fake_site.url("/busy"), fake_site.url("/plain"), per_host="1")
    assert (busy.error, busy.outputs["title"], busy.attempts) == ("", "Welcome back", 2)
    assert other.error == ""
    first_429 = fake_site.times[fake_site.requests.index("/busy")]
    after = [
        t
        for path, t in zip(fake_site.requests, fake_site.times, strict=True)
        if path != "/robots.txt"
    ]
    assert sorted(after)[1] - first_429 >= 0.99  # nothing went to the host in the pause


def test_robots_txt_is_kept_for_the_next_sessions(fake_site):
    fake_site.robots = "User-agent: *\nDisallow: /plain\n"
    fetch(fake_site.url("/"))
    [page] = fetch(fake_site.url("/plain"))  # another batch: another session
    assert "disallows" in page.error
    assert fake_site.requests.count("/robots.txt") == 1


def test_the_live_status_says_pages_per_minute_hosts_in_flight_and_the_slowest(three_hosts):
    slow, quick, _ = three_hosts
    slow.latency = quick.latency = 0.5
    options = WEB.validate_options({"robots": "no"}, ["link"])
    with RowStream(WEB, options) as stream:
        stream.submit(1, {"link": slow.url("/plain")})
        stream.submit(2, {"link": quick.url("/")})
        wait_for(lambda: "2 hosts in flight" in stream.status(), timeout=5, what="2 hosts")
        quick.latency = 0.0
        stream.submit(3, {"link": quick.url("/")})
        outcomes = []

        def all_back() -> bool:
            outcomes.extend(stream.collect(timeout=0.1))
            return len(outcomes) == 3

        wait_for(all_back, timeout=10, what="the 3 rows")
    assert [outcome.error for outcome in outcomes] == ["", "", ""]
    assert re.fullmatch(
        r"[\d,]+ pages/min · 0 hosts in flight · slowest: "
        r"127\.0\.0\.1 \d+\.\d s, 127\.0\.0\.2 \d+\.\d s",  # the slow host first
        stream.status(),
    ), stream.status()


def test_with_redis_the_per_host_slots_are_shared_with_other_workers(
    fake_site, settings, redis_url
):
    settings.REDIS_URL = redis_url
    forget_hosts(settings)
    client = redis.Redis.from_url(redis_url)
    slots = "conveyor-web:slots:127.0.0.1"
    client.zadd(slots, {"other-worker-1": time.time() + 60, "other-worker-2": time.time() + 60})
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.extend(fetch(fake_site.url("/plain"))))
    thread.start()
    try:
        # The row holds this process's slot for the host and waits for one in Redis.
        wait_for(lambda: hosts._local.in_use("127.0.0.1") == 1, timeout=5, what="the row")
        assert fake_site.requests == []
        released = time.monotonic()
        client.zrem(slots, "other-worker-1")  # the other worker is done with one
        thread.join(timeout=10)
    finally:
        client.delete(slots)
        client.close()
    assert [outcome.error for outcome in outcomes] == [""]
    assert min(fake_site.times) >= released  # not even robots.txt went out before


def test_a_crawl_delay_in_robots_txt_spaces_the_pages_like_per_host_delay(fake_site):
    fake_site.robots = "User-agent: *\nCrawl-delay: 0.3\n"
    outcomes = fetch(fake_site.url("/?n=1"), fake_site.url("/?n=2"), per_host="1")
    assert [outcome.error for outcome in outcomes] == ["", ""]
    first, second = fake_site.times[1:]  # after robots.txt
    assert second - first >= 0.2  # 0.3 s when sent, less the request's trip
