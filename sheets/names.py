"""The names of the sheet job kinds and a sheet's entity key: shared by the kinds'
handlers (`sheets.kinds`), the run parameters (`sheets.run`), the services and selectors,
without any of them importing the handlers."""

from __future__ import annotations

KIND = "sheets.process"
WRITE_BACK = "sheets.write_back"
IMPORT = "sheets.import"


def entity_key(sheet) -> str:
    """The key of a sheet's jobs (a Sheet or its id): one active job per sheet, and the
    key its page follows live."""
    return f"sheet:{sheet if isinstance(sheet, int) else sheet.pk}"
