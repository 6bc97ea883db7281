"""The Django admin for sheets and row results, read-only.

Sheets come from imports and row results from jobs, so neither is added, edited or
deleted here (a sheet's delete page would list every row). Row results list by job,
sheet and row, filter to errors and search the error text; the queries never join
the big tables. (A sheet job's admin links come from `sheets/plugin.py`.)
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs.public import FilterLookupsOnly, ViewOnly, json_block, redact
from sheets.models import RowResult, Sheet, SheetRow
from sheets.names import entity_key
from sheets.plugin import row_results_url


class ReadOnlyAdmin(ViewOnly, FilterLookupsOnly, admin.ModelAdmin):
    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def job_admin_link(job_id: int | None) -> SafeString | str:
    if not job_id:
        return "—"
    return format_html(
        '<a href="{}">#{}</a>', reverse("admin:jobs_job_change", args=[job_id]), job_id
    )


def sheet_admin_link(sheet_id: int | None, name: str = "") -> SafeString | str:
    if not sheet_id:
        return "—"
    url = reverse("admin:sheets_sheet_change", args=[sheet_id])
    return format_html('<a href="{}">{}</a>', url, name or f"sheet #{sheet_id}")


class IdFilter(admin.SimpleListFilter):
    """Filter by one related id given in the URL (`?job=12`); shown only when set.

    A list of every job or sheet would be far too long for the sidebar.
    """

    field = ""

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, f"#{value}")] if value and value.isdecimal() else []

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdecimal():
            return queryset.filter(**{f"{self.field}_id": int(value)})
        return queryset


class JobIdFilter(IdFilter):
    title = "job"
    parameter_name = "job"
    field = "job"


class SheetIdFilter(IdFilter):
    title = "sheet"
    parameter_name = "sheet"
    field = "sheet"


@admin.register(Sheet)
class SheetAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "owner", "source", "row_count", "column_count", "created_at"]
    list_display_links = ["id", "name"]
    list_filter = ["source", ("owner", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["name", "owner__username", "google_id"]
    list_select_related = ["owner"]
    fields = [
        "name",
        "owner",
        "source",
        "google_id",
        "worksheet",
        "encoding",
        "delimiter",
        "column_list",
        "row_count",
        "created_at",
        "links",
    ]
    readonly_fields = fields

    @admin.display(description="columns")
    def column_count(self, sheet: Sheet) -> int:
        return len(sheet.columns or [])

    @admin.display(description="columns")
    def column_list(self, sheet: Sheet) -> str:
        return ", ".join(sheet.columns or [])

    @admin.display(description="links")
    def links(self, sheet: Sheet) -> SafeString:
        jobs = reverse("admin:jobs_job_changelist") + f"?entity_key={entity_key(sheet)}"
        return format_html(
            '<a href="{}">Sheet page</a> · <a href="{}">Jobs</a> · <a href="{}">Row results</a>',
            sheet.get_absolute_url(),
            jobs,
            row_results_url(sheet=sheet.pk),
        )


@admin.register(RowResult)
class RowResultAdmin(ReadOnlyAdmin):
    list_display = [
        "row_number",
        "job_link",
        "sheet_link",
        "failed",
        "error_summary",
        "outputs_summary",
        "attempts",
        "duration",
        "updated_at",
    ]
    list_filter = [JobIdFilter, SheetIdFilter, ("failed", admin.BooleanFieldListFilter)]
    search_fields = ["error"]
    search_help_text = "Error text."
    list_per_page = 100
    show_full_result_count = False
    fields = [
        "job_link",
        "sheet_link",
        "row_number",
        "inputs",
        "outputs_json",
        "failed",
        "error",
        "attempts",
        "duration",
        "dedupe_key",
        "updated_at",
    ]
    readonly_fields = fields

    def get_ordering(self, request: HttpRequest) -> list[str]:
        """Index order, without joining jobs (their default ordering would be used)."""
        if request.GET.get("job", "").isdigit():
            return ["row_number"]
        return ["-job_id", "-row_number"]

    @admin.display(description="job", ordering="job_id")
    def job_link(self, result: RowResult) -> SafeString | str:
        return job_admin_link(result.job_id)

    @admin.display(description="sheet", ordering="sheet_id")
    def sheet_link(self, result: RowResult) -> SafeString | str:
        return sheet_admin_link(result.sheet_id)

    @admin.display(description="error")
    def error_summary(self, result: RowResult) -> str:
        return result.error[:120] if result.error else ""

    @admin.display(description="outputs")
    def outputs_summary(self, result: RowResult) -> str:
        text = ", ".join(f"{k}={v}" for k, v in redact(result.outputs or {}).items())
        return text[:120] + ("…" if len(text) > 120 else "")

    @admin.display(description="outputs")
    def outputs_json(self, result: RowResult) -> SafeString:
        return json_block(redact(result.outputs))

    @admin.display(description="input row")
    def inputs(self, result: RowResult) -> SafeString | str:
        row = SheetRow.objects.filter(sheet_id=result.sheet_id, number=result.row_number).first()
        sheet = Sheet.objects.filter(pk=result.sheet_id).only("columns").first()
        if row is None or sheet is None:
            return "—"
        return json_block(dict(zip(sheet.columns, row.values, strict=False)))
