"""Pages of the sheets app."""

from __future__ import annotations

from django.urls import path

from sheets.web import detail, exports, listing, manage, results, start

app_name = "sheets"

urlpatterns = [
    path("", listing.sheet_list, name="list"),
    path("upload/", listing.upload, name="upload"),
    path("sample/", listing.sample, name="sample"),
    path("<int:sheet_id>/", detail.sheet_detail, name="detail"),
    path("<int:sheet_id>/rename/", manage.rename, name="rename"),
    path("<int:sheet_id>/delete/", manage.delete, name="delete"),
    path("<int:sheet_id>/options/", detail.options_form, name="options"),
    path("<int:sheet_id>/options/notice/", detail.options_notice, name="options_notice"),
    path("<int:sheet_id>/start/", start.start, name="start"),
    path("<int:sheet_id>/trial/", start.trial, name="trial"),
    path("<int:sheet_id>/llm-preview/", start.llm_preview, name="llm_preview"),
    path("<int:sheet_id>/results/", results.results, name="results"),
    path("jobs/<int:job_id>/export.csv", exports.export_csv, name="export_csv"),
    path("jobs/<int:job_id>/export.xlsx", exports.export_xlsx, name="export_xlsx"),
    path("jobs/<int:job_id>/write-back/", exports.write_back, name="write_back"),
]
