"""Processors: what a sheet job does to each row. The registry and runner live in
`base.py`; the built-ins `llm`, `web`, `clean` and `copy` register on the registry's first
use (`base.BUILT_INS`), so processes that never run a row never load their libraries.
"""

from __future__ import annotations

from sheets.processors.base import (
    DEDUPE_KEY,
    USAGE_KEY,
    Option,
    OptionsError,
    Processor,
    RowError,
    RowOutcome,
    UnknownProcessor,
    all_processors,
    get_processor,
    processor,
    run_rows,
)

__all__ = [
    "DEDUPE_KEY",
    "USAGE_KEY",
    "Option",
    "OptionsError",
    "Processor",
    "RowError",
    "RowOutcome",
    "UnknownProcessor",
    "all_processors",
    "get_processor",
    "processor",
    "run_rows",
]
