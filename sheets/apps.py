"""App config for spreadsheets, a plug-in of jobs: its kinds (`sheets/kinds.py`) are
found by jobs' autodiscovery; here the processors of every app are discovered and the
front-end hooks of the sheet kind registered (`sheets/plugin.py`).
"""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class SheetsConfig(AppConfig):
    name = "sheets"
    verbose_name = "Sheets"

    def ready(self) -> None:
        from sheets import plugin  # noqa: F401  (registers the sheet kind's front-end hooks)

        autodiscover_modules("processors")
