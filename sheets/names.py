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


def run_entity_key(params: dict) -> str:
    """The key of a `sheets.process` job from its checked params. A pipeline step (one
    that waits for jobs on the sheet: `after`) has its own, so that the rule "one active
    job per sheet" (which dedupes double submits) does not swallow it."""
    after = params.get("after") or []
    step = f":after:{'-'.join(map(str, sorted(after)))}" if after else ""
    return entity_key(params["sheet_id"]) + step
