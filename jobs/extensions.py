"""What an app plugs into jobs' front ends for its own kinds, registered once per kind.

The engine runs any kind; the pages, the admin and the metrics know nothing of what a
kind works on. An app tells them with one `extend_kind(...)` call (sheets does it in
`sheets/plugin.py`): the page of the thing a job works on, an extra live fragment for
that page, links on the job's admin page, the table holding one row per unit done, the
job's results to download, and what a resume may change.
Front ends ask `extension_for(job.kind)`; a kind without an extension gets the defaults.
An app may also name the page where users start new work (`set_start_page`): the empty
job list and schedules page link to it, without jobs naming the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.models import Job

Link = tuple[str, str]  # (label, url)


@dataclass(frozen=True)
class UnitTable:
    """A table with one row per processed unit, for the metrics page's row rate."""

    model: str  # "app_label.Model"
    job_field: str  # the foreign key to the job
    time_field: str  # when the unit was stored
    failed_field: str | None = None  # a boolean: the unit failed


@dataclass(frozen=True)
class KindExtension:
    entity_url: Callable[[Job], str] | None = None
    """The page of what the job works on ("" when it has none)."""
    entity_fragment: Callable[[Job], str] | None = None
    """Extra HTML pushed to that page's live socket when the job changes."""
    admin_links: Callable[[Job], Iterable[Link]] | None = None
    """Links shown on the job's admin page."""
    unit_table: UnitTable | None = None
    downloads: Callable[[Job], Iterable[Link]] | None = None
    """The job's results as files (label, url), offered on the job's page."""
    resume_fields: tuple[str, ...] = ()
    """What a resume may change (a sheet job's budget): fields of the API's resume body."""
    resume_with: Callable[[Job, dict[str, Any]], tuple[dict[str, Any], str]] | None = None
    """Given those fields, the paused job's new params (as stored) and the timeline's
    words for the change; raises `InvalidChanges` for bad values."""
    resume_form: Callable[[Job], str] | None = None
    """The inside of the form that resumes this paused job with changes (HTML: a few
    words, inputs named as `resume_fields` holding the current values, a submit button),
    or "" when no change would help this pause. The job's live panel shows it, on every
    page that shows the panel, pushed live: one copy for every viewer, so no CSRF token
    (the page adds its own when the form is sent)."""


NO_EXTENSION = KindExtension()
_extensions: dict[str, KindExtension] = {}


def extend_kind(kind: str, **hooks) -> KindExtension:
    """Register the front-end hooks of `kind` (see KindExtension for their meaning)."""
    extension = KindExtension(**hooks)
    _extensions[kind] = extension
    return extension


def extension_for(kind: str) -> KindExtension:
    return _extensions.get(kind, NO_EXTENSION)


def entity_url(job: Job) -> str:
    hook = extension_for(job.kind).entity_url
    return hook(job) if hook and job.entity_key else ""


def entity_fragment(job: Job) -> str:
    hook = extension_for(job.kind).entity_fragment
    return hook(job) if hook else ""


def admin_links(job: Job) -> list[Link]:
    hook = extension_for(job.kind).admin_links
    return list(hook(job)) if hook else []


def resume_form(job: Job) -> str:
    hook = extension_for(job.kind).resume_form
    return hook(job) if hook else ""


def downloads(job: Job) -> list[Link]:
    hook = extension_for(job.kind).downloads
    return list(hook(job)) if hook else []


def unit_tables() -> list[UnitTable]:
    return [ext.unit_table for ext in _extensions.values() if ext.unit_table is not None]


_start_page: dict[str, str] = {}


def set_start_page(url_name: str, label: str, hint: str = "") -> None:
    """Where users start new work (a URL name and the link's words, e.g. sheets' list:
    "Start one on a sheet", "upload a CSV or try the sample")."""
    _start_page.update(url_name=url_name, label=label, hint=hint)


def start_page() -> dict[str, str]:
    """The page set by `set_start_page` (`url_name`, `label`, `hint`), or {}."""
    return dict(_start_page)
