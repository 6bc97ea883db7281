"""What the live panel says stays true while it updates (issue #22, item 12): after
"Start and watch" no "Still running" (that greets a return, and does after a reload), and
the row counter beside the progress counts the job's own rows."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.browser.conftest import wait_for_js, wait_until_live
from tests.sheets.factories import make_sheet

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

ROWS = 200
PANEL = "document.querySelector('#current-job-live {}')"


def shown(page, *selectors: str) -> list[str]:
    """The texts of parts of the live panel, read at one moment."""
    texts = ", ".join(f"{PANEL.format(s)}?.textContent.trim() ?? ''" for s in selectors)
    return page.evaluate(f"() => [{texts}]")


def test_start_and_watch_is_not_still_running_live_and_a_return_is(
    fake_openai,
    cluster,
    open_page,
    user,  # the fake first: the web process allows it
):
    fake_openai.latency = 0.05  # one row at a time: 200 rows take 10 s or more
    sheet = make_sheet(user, [["name"], *[[f"Pear {i}"] for i in range(1, 401)]])
    page = open_page(user, sheet.get_absolute_url())
    page.locator("select[name=processor]").select_option("llm")
    options = page.locator("#processor-options")
    options.locator("legend", has_text="LLM").wait_for()
    options.locator("input[name=opt_base_url]").fill(fake_openai.base_url)
    options.locator("textarea[name=opt_prompt]").fill("Describe {name}")
    options.locator("input[name=opt_concurrency]").fill("1")
    page.locator("input[name=row_count]").fill(str(ROWS))
    page.locator("#start-watch").click()
    page.wait_for_load_state()
    wait_until_live(page)

    page.locator("#current-job-live .status", has_text="Running").wait_for()
    [first] = shown(page, ".processed")
    wait_for_js(page, f"{PANEL.format('.processed')}.textContent.trim() !== '{first}'")
    for _ in range(3):  # live updates, one after another
        processed, message = shown(page, ".processed", ".message")
        done = int(processed.split(" / ")[0])
        assert processed == f"{done} / {ROWS}"
        assert message.startswith(f"Row {done} of {ROWS} · ")  # then the pace
        assert not page.locator("#running-notice").is_visible()
        assert not page.get_by_text("Still running").is_visible()
        wait_for_js(page, f"{PANEL.format('.processed')}.textContent.trim() !== '{processed}'")

    page.reload()  # coming back
    wait_until_live(page)
    job = Job.objects.get(owner=user)
    if job.status == Job.Status.RUNNING:
        page.locator("#running-notice", has_text="Still running").wait_for()
        assert page.locator("#running-notice").is_visible()
