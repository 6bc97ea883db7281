"""Pages of the sheets app."""

from __future__ import annotations

from django.urls import path

from sheets import views

app_name = "sheets"

urlpatterns = [
    path("", views.sheet_list, name="list"),
    path("upload/", views.upload, name="upload"),
    path("sample/", views.sample, name="sample"),
    path("<int:sheet_id>/", views.sheet_detail, name="detail"),
    path("<int:sheet_id>/rename/", views.rename, name="rename"),
    path("<int:sheet_id>/delete/", views.delete, name="delete"),
    path("<int:sheet_id>/options/", views.options_form, name="options"),
    path("<int:sheet_id>/options/notice/", views.options_notice, name="options_notice"),
    path("<int:sheet_id>/start/", views.start, name="start"),
    path("<int:sheet_id>/trial/", views.trial, name="trial"),
    path("<int:sheet_id>/llm-preview/", views.llm_preview, name="llm_preview"),
    path("<int:sheet_id>/results/", views.results, name="results"),
    path("jobs/<int:job_id>/export.csv", views.export_csv, name="export_csv"),
    path("jobs/<int:job_id>/export.xlsx", views.export_xlsx, name="export_xlsx"),
    path("jobs/<int:job_id>/write-back/", views.write_back, name="write_back"),
]
