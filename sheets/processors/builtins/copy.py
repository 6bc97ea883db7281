"""The `copy` processor: every input column copied to an output unchanged.

Useful to export a subset of a sheet's rows and columns, and it is the no-op the
benchmarks use to measure Conveyor's own per-row overhead.
"""

from __future__ import annotations

from sheets.processors import processor


def _outputs(options: dict, input_columns: list[str]) -> list[str]:
    return [f"copy_{column}" for column in input_columns]


@processor(
    "copy",
    label="Copy (no processing)",
    description="Copies the chosen input columns unchanged: export a subset of a sheet, "
    "or measure Conveyor's own overhead.",
    options=[],
    outputs=_outputs,
)
def copy_row(row: dict[str, str], options: dict) -> dict[str, str]:
    return {f"copy_{column}": value for column, value in row.items()}
