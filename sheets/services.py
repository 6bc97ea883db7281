"""Starting work on a sheet: the one function pages, the CLI and scripts call."""

from __future__ import annotations

from typing import Any

from jobs.engine.services import job_submit
from jobs.models import Job
from sheets.kinds import KIND, validate_params
from sheets.models import Sheet


def sheet_job_submit(
    *,
    sheet: Sheet,
    owner,
    processor: str,
    options: dict[str, Any] | None = None,
    columns: list[str] | str | None = None,
    start_row: int | str | None = None,
    row_count: int | str | None = None,
    row_timeout: float | str | None = None,
    priority: str | int | None = None,
    session_key: str = "",
) -> Job:
    """Validate and queue a `sheets.process` job (raises SheetParamsError, ValueError).

    A sheet has at most one active job: if one is running, it is returned with
    `deduplicated=True` instead of starting a second.
    """
    params = validate_params(
        {
            "sheet_id": sheet.pk,
            "processor": processor,
            "options": options or {},
            "columns": columns,
            "start_row": start_row,
            "row_count": row_count,
            "row_timeout": row_timeout,
        },
        owner,
    )
    return job_submit(
        kind=KIND,
        params=params,
        owner=owner,
        priority=priority,
        session_key=session_key,
        total=params["row_count"],
    )
