"""App config for spreadsheets: registers the sheet job kinds and the built-in processors."""

from __future__ import annotations

from django.apps import AppConfig


class SheetsConfig(AppConfig):
    name = "sheets"
    verbose_name = "Sheets"

    def ready(self) -> None:
        from sheets import export, kinds, live, processors  # noqa: F401  (registration)
