"""Template filters for job pages: durations, rates, pretty JSON, a job's entity page,
why a paused job is paused and its kind's form to resume it with changes."""

from __future__ import annotations

import json

from django import template

from jobs import extensions, selectors
from jobs.engine.redact import redact
from jobs.engine.services import failed_rows_retry_label

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """1.5 -> '1.5 s', 75 -> '1 min 15 s', 3700 -> '1 h 1 min'."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def per_second(rate: float | None) -> str:
    if rate is None:
        return "—"
    return f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.1f}/s"


@register.filter
def retry_failed_label(job) -> str:
    """The label of a finished job's "retry failed rows" button (it says when the retry
    also processes rows the job never reached)."""
    return failed_rows_retry_label(job)


@register.filter
def pretty_json(value) -> str:
    """Indented JSON with secrets (API keys, passwords) masked."""
    return json.dumps(redact(value), indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def entity_url(job) -> str:
    """The page of what the job works on (e.g. its sheet), when its kind has one."""
    return extensions.entity_url(job)


def usd(amount: float) -> str:
    """$12.35, $0.0042: cents for sums that have them, four places for small ones."""
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


@register.filter
def spent_items(spent: dict | None) -> list[tuple[str, str, str]]:
    """A job's `spent` as (label, text, css name): "Prompt tokens" "12,345"; a key ending
    in `_usd` is money ("Cost" "$0.0123")."""
    items = []
    for name, value in (spent or {}).items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        css = name.replace("_", "-")
        if name.endswith("_usd"):
            label = name.removesuffix("_usd").replace("_", " ").capitalize()
            items.append(("Cost" if label == "Cost" else f"{label} (USD)", usd(value), css))
        else:
            items.append((name.replace("_", " ").capitalize(), f"{value:,}", css))
    return items


@register.filter
def paused_why(job) -> str:
    """Why a paused job is paused, as its timeline said it ("Paused: Budget reached: …",
    "Paused by alice"); "" for a job not paused."""
    if job.status != job.Status.PAUSED:
        return ""
    return selectors.last_state_message(job) or "Paused"


@register.filter
def resume_form(job) -> str:
    """The inside of the form that resumes this paused job with changes (its kind's
    `resume_form`: a sheet job's new budget), or "". A plain str from a hook is escaped;
    render_to_string's SafeString is not."""
    if job.status != job.Status.PAUSED:
        return ""
    return extensions.resume_form(job)  # rendered by the kind's template: safe, escaped


@register.filter
def downloads(job) -> list[tuple[str, str]]:
    """The job's results to download (label, url), when its kind offers them."""
    return extensions.downloads(job)


@register.simple_tag
def start_page() -> dict[str, str]:
    """Where users start new work (`{% start_page as start %}`): the page an app set with
    `extensions.set_start_page`, or {}."""
    return extensions.start_page()
