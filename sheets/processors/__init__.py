"""Processors: what a sheet job does to each row. The registry and runner live in
`base.py`; importing this package registers the built-ins `llm`, `web`, `clean` and `copy`.
"""

from __future__ import annotations

from sheets.processors import clean, copy, llm, web  # noqa: F401 - registers the built-ins
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
