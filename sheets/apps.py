"""App config for spreadsheets, a plug-in of jobs: its kinds (`sheets/kinds.py`) are
found by jobs' autodiscovery; here the processors of every app are discovered, the
front-end hooks of the sheet kind registered (`sheets/plugin.py`) and the prefixes of
the keys sheets makes reserved (no user may give a job such a key).
"""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

# The entity keys sheets derives: `sheet:N` (imports, runs; `sheet:N:after:M` for a
# chain's steps, sheets.names.entity_key) and `write-back:N` (sheets.services).
KEY_PREFIXES = ("sheet:", "write-back:")


class SheetsConfig(AppConfig):
    name = "sheets"
    verbose_name = "Sheets"

    def ready(self) -> None:
        from jobs.public import reserve_entity_prefix
        from sheets import plugin  # noqa: F401  (registers the sheet kind's front-end hooks)

        for prefix in KEY_PREFIXES:
            reserve_entity_prefix(prefix)

        autodiscover_modules("processors")
