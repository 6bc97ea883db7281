"""What sheets plugs into jobs' front ends for the `sheets.process` kind, in one place:
the sheet's page as the job's entity page, the live signal that refreshes the page's
results table (and, for a step of a chain, the chain's one progress), links on the job's admin
page, RowResult as its unit table, the exports as the job's downloads, and the budget
as what a resume may change (and the form for it, in the job's live panel).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.template.loader import render_to_string
from django.urls import reverse

from jobs.models import Job
from jobs.public import Link, UnitTable, extend_kind, set_start_page
from sheets.chains import chain_progress
from sheets.kinds import KIND
from sheets.models import Sheet
from sheets.selectors import paused_at_budget
from sheets.services import BUDGET_OPTIONS, sheet_job_new_budget


def sheet_id_of(job: Job) -> int | None:
    """The sheet a job works on (from its params), if that is a valid id."""
    sheet_id = (job.params or {}).get("sheet_id")
    return sheet_id if isinstance(sheet_id, int) and not isinstance(sheet_id, bool) else None


def sheet_page(job: Job) -> str:
    sheet_id = sheet_id_of(job)
    return reverse("sheets:detail", args=[sheet_id]) if sheet_id else ""


def results_signal(job: Job) -> str:
    """Tells the sheet's page that rows were committed, so it refreshes its results; a
    step of a chain also brings the chain's progress ("Step 2 of 3: llm 40 %")."""
    context = {"job": job, "oob": True}
    html = render_to_string("sheets/sheet_detail.html#results_signal", context)
    chain = chain_progress(job)
    if chain is not None:
        html += render_to_string("sheets/_chain.html", {"chain": chain, "oob": True})
    return html


def budget_form(job: Job) -> str:
    """The inside of the form that resumes a job paused at its budget with a new one
    (the job's live panel shows it, on its page and its sheet's), else ""."""
    budget = paused_at_budget(job)
    return render_to_string("sheets/_budget_form.html", {"budget": budget}) if budget else ""


def row_results_url(*, job: int | None = None, sheet: int | None = None, errors: bool = False):
    query = [f"job={job}"] if job else []
    query += [f"sheet={sheet}"] if sheet else []
    query += ["failed__exact=1"] if errors else []
    return reverse("admin:sheets_rowresult_changelist") + "?" + "&".join(query)


def admin_links(job: Job) -> Iterable[Link]:
    """Links on a sheet job's admin page: the sheet, its row results, the errors."""
    sheet_id = sheet_id_of(job)
    links: list[Link] = []
    if sheet_id and Sheet.objects.filter(pk=sheet_id).exists():
        links += [
            ("Sheet (admin)", reverse("admin:sheets_sheet_change", args=[sheet_id])),
            ("Sheet page", reverse("sheets:detail", args=[sheet_id]) + f"?job={job.pk}"),
        ]
    links += [
        ("Row results", row_results_url(job=job.pk)),
        (f"Failed rows ({job.failed:,})", row_results_url(job=job.pk, errors=True)),
    ]
    return links


def downloads(job: Job) -> Iterable[Link]:
    """Any sheet job's results, not only the sheet's latest: CSV and XLSX exports."""
    return [
        ("Download CSV", reverse("sheets:export_csv", args=[job.pk])),
        ("Download XLSX", reverse("sheets:export_xlsx", args=[job.pk])),
    ]


extend_kind(
    KIND,
    downloads=downloads,
    entity_url=sheet_page,
    entity_fragment=results_signal,
    admin_links=admin_links,
    unit_table=UnitTable("sheets.RowResult", "job", "updated_at", "failed"),
    resume_fields=BUDGET_OPTIONS,
    resume_with=sheet_job_new_budget,
    resume_form=budget_form,
)
set_start_page("sheets:list", "Start one on a sheet", "upload a CSV or try the sample")
