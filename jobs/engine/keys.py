"""Entity and session keys: the prefixes plug-ins reserve, and the check of keys users give.

A plug-in derives the keys of its own jobs (sheets: `sheet:12`, `sheet:12:after:7`,
`write-back:40`) and reserves their prefixes at start-up (`reserve_entity_prefix`, in its
AppConfig.ready). Front ends refuse a reserved prefix in any key a user gives
(`check_user_key`), so a typed key never passes for one the plug-in made; lookups by key
are scoped to the job's owner on top of that (`jobs.selectors.job_with_key`, the
live consumer, the plug-in's own queries).
"""

from __future__ import annotations

_reserved: set[str] = set()


class ReservedKey(ValueError):
    """A key a user gave starts with a prefix a plug-in reserved."""


def reserve_entity_prefix(prefix: str) -> None:
    """Keys starting with `prefix` are made by the calling plug-in only (e.g. "sheet:")."""
    if not prefix or prefix != prefix.strip():
        raise ValueError(f"A reserved key prefix must be non-empty text, not {prefix!r}.")
    _reserved.add(prefix)


def reserved_prefixes() -> list[str]:
    return sorted(_reserved)


def reserved_prefix_of(key: str) -> str:
    """The reserved prefix `key` starts with ("" if none). Compared without case and
    leading spaces: SQLite's LIKE (Django's `startswith` there) ignores ASCII case."""
    folded = key.lstrip().casefold()
    return next((p for p in sorted(_reserved) if folded.startswith(p.casefold())), "")


def check_user_key(key: str) -> str:
    """`key` as a user gave it, or ReservedKey saying which prefix is not theirs to use."""
    if prefix := reserved_prefix_of(key):
        raise ReservedKey(
            f"must not start with {prefix!r}: keys with that prefix are made by Conveyor "
            "itself; choose another key"
        )
    return key
