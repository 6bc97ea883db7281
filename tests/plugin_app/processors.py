"""A sheet processor from another app: the length of each row's first column."""

from __future__ import annotations

from sheets.processors import processor


@processor("plugin.length", label="Length of the first column", outputs=["length"])
def length(row: dict[str, str], options: dict) -> dict:
    return {"length": len(next(iter(row.values()), ""))}
