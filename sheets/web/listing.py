"""The sheets list and the ways a sheet comes in: a file (or several: a batch), a Google
Sheet link, the bundled sample."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from jobs.public import (
    JobActionError,
    QuotaExceeded,
    sort_key,
)
from sheets.chains import latest_steps, with_new_results
from sheets.io.sources import SourceError
from sheets.processors import UnknownProcessor, all_processors
from sheets.run import SheetParamsError
from sheets.selectors import monthly_budget_of, sheets_of
from sheets.services import (
    sheet_from_file,
    sheet_from_link,
    sheet_upload,
    sheets_upload,
)

SAMPLE = Path(__file__).parents[1] / "samples" / "contacts.csv"


# The sheets list's sortable columns: the `sort` parameter (a leading "-" for descending)
# to the fields ordered by; anything else is ignored (newest first).
SHEET_SORTS = {"name": ("name",), "rows": ("row_count",), "created": ("created_at",)}


def _render_list(request: HttpRequest, error: str = "", status: int = 200) -> HttpResponse:
    sort, order_by = sort_key(request.GET.get("sort", ""), SHEET_SORTS, default="-created")
    page = Paginator(sheets_of(request.user, order_by), 25).get_page(request.GET.get("page"))
    latest = latest_steps(list(page.object_list))
    rows = [(sheet, latest.get(sheet.pk)) for sheet in page.object_list]
    context = {
        "page": page,
        "rows": rows,
        "new_results": with_new_results(list(page.object_list)),
        "error": error,
        "max_mb": _max_mb(),
        "processors": all_processors(),
        "sort": sort,
        "monthly_budget": monthly_budget_of(request.user),
    }
    return render(request, "sheets/sheet_list.html", context, status=status)


def _max_mb() -> int:
    return settings.CONVEYOR_MAX_UPLOAD_BYTES // (1024 * 1024)


@require_GET
@login_required
def sheet_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@require_POST
@login_required
def upload(request: HttpRequest) -> HttpResponse:
    """A file or a Google Sheet link in, a Sheet out, or a clear message and nothing made."""
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.CONVEYOR_MAX_UPLOAD_BYTES + 64 * 1024:
        return _render_list(request, f"The file is larger than the {_max_mb()} MB limit.", 413)
    files = request.FILES.getlist("file")
    file = files[0] if files else None
    link = request.POST.get("google_url", "").strip()
    worksheet = request.POST.get("worksheet", "").strip() or None
    if len(files) > 1:
        return _upload_several(request, files, worksheet)
    try:
        if file is not None:
            sheet = sheet_upload(upload=file, owner=request.user, worksheet=worksheet)
        elif link:
            sheet = sheet_from_link(url_or_id=link, owner=request.user, worksheet=worksheet)
        else:
            return _render_list(
                request, "Choose a CSV or XLSX file, or paste a Google Sheet link.", 400
            )
    except SourceError as exc:
        return _render_list(request, str(exc), 400)
    except QuotaExceeded as exc:  # a large file's import job
        return _render_list(request, str(exc), 429)
    if sheet.is_ready:
        rows = "1 row" if sheet.row_count == 1 else f"{sheet.row_count} rows"
        messages.success(request, f"Imported {rows} from {sheet.name}.")
    else:
        messages.info(request, f"Importing {sheet.name} in the background: follow it below.")
    return redirect(sheet)


def _upload_several(request: HttpRequest, files: list, worksheet: str | None) -> HttpResponse:
    """Several files: all of them imported (and, with a processor, run as one batch), or
    none, and a message naming the refused file. `sheets_upload` parses every file before
    it writes anything, so no transaction (no SQLite write lock) waits on the parsing."""
    processor = request.POST.get("processor", "").strip()
    try:
        sheets, batch = sheets_upload(
            uploads=files, owner=request.user, worksheet=worksheet, processor=processor
        )
    except (SourceError, UnknownProcessor) as exc:
        return _render_list(request, f"{exc} Nothing was imported.", 400)
    except SheetParamsError as exc:
        name = getattr(exc, "file", "") or getattr(getattr(exc, "sheet", None), "name", "")
        refused = f"{name}: {exc}" if name else str(exc)
        return _render_list(request, f"{refused} Nothing was imported.", 400)
    except QuotaExceeded as exc:
        return _render_list(request, str(exc), 429)
    except JobActionError as exc:
        return _render_list(request, str(exc), 409)
    if batch is None:
        messages.success(request, f"Imported {len(sheets)} sheets.")
        return redirect("sheets:list")
    messages.success(request, f"Imported {len(sheets)} sheets; batch #{batch.pk} is running.")
    return redirect(batch)


@require_POST
@login_required
def sample(request: HttpRequest) -> HttpResponse:
    """Import the bundled sample sheet: a job is then one click away."""
    upload = SimpleUploadedFile(SAMPLE.name, SAMPLE.read_bytes(), "text/csv")
    sheet = sheet_from_file(upload=upload, owner=request.user)
    return redirect(f"{sheet.get_absolute_url()}?processor=clean")
