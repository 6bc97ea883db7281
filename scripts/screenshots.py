"""Screenshots of the main pages for the README, taken from a running Conveyor.

Start Conveyor first (`make run`, or any web process with its workers), then run
`.venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:8000] [--out DIR]`.
It logs in with the login `make run` created (var/login.json, or --username and
--password), cleans the bundled sample sheet while watching, and saves PNGs of the
sheet page, the jobs list, the job's page and the metrics page (1400 px wide), and of
the sheet page on a phone (390 px). It only uses the app as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
JOB_TIMEOUT_MS = 120_000


def saved_login() -> tuple[str, str]:
    data_dir = Path(os.environ.get("CONVEYOR_DATA_DIR", ROOT / "var"))
    saved = json.loads((data_dir / "login.json").read_text())
    return saved["username"], saved["password"]


def charts_drawn(page, timeout: float = 30) -> None:
    """Wait for the metrics page's first data (the CSP refuses wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate("() => Boolean(window.conveyorMetrics?.updates)"):
        if time.monotonic() > deadline:
            raise TimeoutError("the metrics page drew no data")
        page.wait_for_timeout(200)


def take(url: str, out: Path, username: str, password: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless"])
        page = browser.new_context(base_url=url, viewport=DESKTOP).new_page()
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
        page.locator("#try-sample").click()
        page.wait_for_url("**/sheets/*/?processor=clean")
        page.locator("#start-watch").click()
        page.locator("#current-job-live .status", has_text="Succeeded").wait_for(
            timeout=JOB_TIMEOUT_MS
        )
        page.locator("#results tbody tr[data-row]").first.wait_for()
        job_url = page.locator("#current-job-live a", has_text="Job #").get_attribute("href")
        shot("sheet")
        page.set_viewport_size(PHONE)
        shot("sheet-phone")
        page.set_viewport_size(DESKTOP)

        for name, path in (("jobs", "/jobs/"), ("job", job_url), ("metrics", "/metrics/")):
            page.goto(path)
            page.wait_for_load_state("load")
            if name == "metrics":
                charts_drawn(page)
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
