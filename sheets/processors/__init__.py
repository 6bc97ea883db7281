"""Processors: what a sheet job does to each row, and everything a processor needs.

`registry` (`@processor`, `get_processor`), `options` (`Option`, `OptionsError`),
`runner` (`run_rows`, `RowStream`, `RowError`, `UpstreamError`), the HTTP plumbing every
request goes through (`outbound`: the address guard; `ratelimit`: requests/min and
retries; `pacing`: a pace that finds an API's limit, and a breaker) and the
built-ins (`builtins/`). A plug-in imports what it needs from here; how to write one:
docs/processors.md.
"""

from __future__ import annotations

from sheets.processors.options import Option, OptionsError, match_column, parse_columns
from sheets.processors.registry import (
    Processor,
    UnknownProcessor,
    all_processors,
    get_processor,
    processor,
    unregister,
)
from sheets.processors.runner import (
    DEDUPE_KEY,
    USAGE_KEY,
    LiveLimit,
    RowError,
    RowOutcome,
    RowStream,
    UpstreamDown,
    UpstreamError,
    UpstreamRefused,
    extend_row_deadline,
    note_retry,
    run_rows,
)

__all__ = [
    "DEDUPE_KEY",
    "USAGE_KEY",
    "LiveLimit",
    "Option",
    "OptionsError",
    "Processor",
    "RowError",
    "RowOutcome",
    "RowStream",
    "UnknownProcessor",
    "UpstreamDown",
    "UpstreamError",
    "UpstreamRefused",
    "all_processors",
    "extend_row_deadline",
    "get_processor",
    "match_column",
    "note_retry",
    "parse_columns",
    "processor",
    "run_rows",
    "unregister",
]
