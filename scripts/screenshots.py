"""Screenshots of the main pages for the README, taken from a running Conveyor.

Start Conveyor first (`make run`, or any web process with its workers), then run
`.venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:8000] [--out DIR]`.
It logs in with the login `make run` created (var/login.json, or --username and
--password; a staff login, for the admin page), uploads a larger copy of the bundled
sample sheet (so that the job runs long enough to be seen live), starts the `clean`
processor while watching, and saves 1280x800 PNGs of: the sheet page with its live job
(`sheet.png`), the jobs dashboard (`jobs.png`), the job's page (`job.png`), the
metrics page (`metrics.png`) and the admin's jobs list (`admin.png`). It only uses
the app as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sheets" / "samples" / "contacts.csv"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}
COPIES = 1500  # of the sample's 30 rows: 45,000 rows, a job of several seconds
LIVE_PERCENT = 15  # the sheet is shot once its job got this far (and is still running)
TIMEOUT_S = 120


def saved_login() -> tuple[str, str]:
    data_dir = Path(os.environ.get("CONVEYOR_DATA_DIR", ROOT / "var"))
    saved = json.loads((data_dir / "login.json").read_text())
    return saved["username"], saved["password"]


def big_sample() -> bytes:
    """The sample's rows many times over (the header once): a job that lasts."""
    header, *rows = SAMPLE.read_text(encoding="utf-8").splitlines()
    return "\n".join([header, *rows * COPIES, ""]).encode()


def poll(page, expression: str, what: str, timeout: float = TIMEOUT_S) -> None:
    """Wait until `expression` (a function evaluated in the page) is true; the CSP
    refuses wait_for_function's eval, so this polls from here."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        page.wait_for_timeout(200)


LIVE_AND_UNDER_WAY = f"""() => {{
  const live = document.querySelector("#current-job-live");
  const bar = live && live.querySelector("[role=progressbar]");
  return Boolean(live && live.dataset.status === "running" && bar &&
    Number(bar.getAttribute("aria-valuenow")) >= {LIVE_PERCENT} &&
    document.querySelector("#results tbody tr[data-row]"));
}}"""


def take(url: str, out: Path, username: str, password: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless"])
        page = browser.new_context(base_url=url, viewport=VIEWPORT).new_page()
        page.set_default_timeout(30_000)

        def shot(name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path))
            shots.append(path)

        page.goto("/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.locator("form button[type=submit], form input[type=submit]").first.click()
        page.wait_for_url(lambda now: "/login/" not in now)

        page.goto("/sheets/")
        page.set_input_files(
            "input[type=file][name=file]",
            {"name": "contacts.csv", "mimeType": "text/csv", "buffer": big_sample()},
        )
        page.get_by_role("button", name="Upload and preview").click()
        page.wait_for_url("**/sheets/*/")
        page.select_option("select[name=processor]", "clean")
        page.locator("#start-watch").click()
        poll(page, LIVE_AND_UNDER_WAY, "the job to be under way")
        job_url = page.locator("#current-job-live a", has_text="Job #").get_attribute("href")
        shot("sheet")

        for name, path in (
            ("jobs", "/jobs/"),
            ("job", job_url),
            ("metrics", "/metrics/"),
            ("admin", "/admin/jobs/job/"),
        ):
            page.goto(path)
            page.wait_for_load_state("load")
            if name == "metrics":
                poll(page, "() => Boolean(window.conveyorMetrics?.updates)", "the charts", 30)
            shot(name)
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args()
    username, password = (
        (args.username, args.password) if args.username and args.password else saved_login()
    )
    for path in take(args.url, args.out, username, password):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
