"""Processor options: what a processor asks for, rendered as a form field each, and the
one validation that turns what a form, the API or the CLI sent into typed values.

`Option` declares a field; `validate_options()` parses every field and reports every
problem at once (`OptionsError`); `match_column()` and `parse_columns()` find the
sheet's columns a value names, for validators that take column names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jobs.public import is_secret_name

OPTION_TYPES = ("str", "text", "int", "float", "bool", "choice", "secret", "url", "columns")
TRUE_WORDS = {"1", "true", "yes", "on", "y"}
FALSE_WORDS = {"0", "false", "no", "off", "n", ""}


class OptionsError(ValueError):
    """Invalid processor options; `errors` maps each option name to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True)
class Option:
    """One processor option, rendered as a form field.

    `default` may be a zero-argument callable, read when options are validated (so a
    default can come from settings); `initial()` gives the resolved value for a form.
    """

    name: str
    label: str
    type: str = "str"
    default: Any = None
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: unknown type {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"option {self.name!r}: a choice needs choices")
        if self.type == "secret" and not is_secret_name(self.name):
            # The engine seals and masks params by their names: a key under another
            # name would be stored and shown in clear.
            raise ValueError(
                f"option {self.name!r}: a secret option's name must say so "
                "(api_key, token, password, secret, ...), or it would be stored in clear"
            )

    def initial(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def parse(self, raw: Any, input_columns: list[str]) -> Any:
        """The typed value of `raw`; raises ValueError with a user-facing message."""
        if self.type in ("int", "float"):
            return self._number(raw)
        if self.type == "bool":
            return _parse_bool(raw)
        if self.type == "columns":
            return parse_columns(raw, input_columns)
        text = str(raw) if self.type == "text" else str(raw).strip()
        if self.type == "secret" and any(ch.isspace() or not ch.isprintable() for ch in text):
            raise ValueError("A key is one line of visible characters, without spaces.")
        if self.type == "choice" and text not in self.choices:
            raise ValueError(f"Choose one of: {', '.join(self.choices)}.")
        if self.type == "url":
            return _parse_url(text)
        return text

    def _number(self, raw: Any) -> int | float:
        kind = int if self.type == "int" else float
        if isinstance(raw, bool):
            raise ValueError("Enter a number.")
        try:
            value = kind(str(raw).strip()) if isinstance(raw, str) else kind(raw)
        except (TypeError, ValueError):
            raise ValueError(
                "Enter a whole number." if kind is int else "Enter a number."
            ) from None
        if kind is int and isinstance(raw, float) and raw != value:
            raise ValueError("Enter a whole number.")
        if not math.isfinite(value):
            raise ValueError("Enter a number.")
        if self.min is not None and value < self.min:
            raise ValueError(f"Must be at least {self.min:g}.")
        if self.max is not None and value > self.max:
            raise ValueError(f"Must be at most {self.max:g}.")
        return value


# The option a reusable processor gets without declaring it (`@processor(reusable=True)`):
# the row pipeline reads it to decide whether earlier answers stand in for requests.
REUSE_OPTION = Option(
    "reuse",
    "Reuse earlier answers",
    "bool",
    default=True,
    help="Rows you already had answered (same inputs and options) cost no request.",
)


def validate_options(
    options: Iterable[Option], raw: dict[str, Any], input_columns: list[str]
) -> dict[str, Any]:
    """Typed values of `options` from `raw`, defaults filled in; raises `OptionsError`
    listing every problem (unknown names, missing required values, bad values)."""
    options = tuple(options)
    known = {option.name for option in options}
    errors = {name: "Unknown option." for name in raw if name not in known}
    values: dict[str, Any] = {}
    for option in options:
        value = raw.get(option.name)
        if _is_blank(value) or value == []:
            values[option.name] = option.initial()
            if option.required and _is_blank(values[option.name]):
                errors[option.name] = "This field is required."
            continue
        try:
            values[option.name] = option.parse(value, input_columns)
        except ValueError as exc:
            errors[option.name] = str(exc)
    if errors:
        raise OptionsError(errors)
    return values


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("Enter yes or no.")


def _parse_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("Enter a full http:// or https:// URL.")
    return text.rstrip("/")


def _is_blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def match_column(name: str, input_columns: list[str]) -> str | None:
    """The input column called `name`: exact match first, then ignoring case."""
    if name in input_columns:
        return name
    folded = [column for column in input_columns if column.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def parse_columns(raw: Any, input_columns: list[str]) -> list[str]:
    """A comma-separated list (or a list) of input column names, checked against them."""
    names = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    names = [str(name).strip() for name in names if str(name).strip()]
    if not input_columns:
        return names
    matched = [match_column(name, input_columns) for name in names]
    unknown = [name for name, column in zip(names, matched, strict=True) if column is None]
    if unknown:
        raise ValueError(
            f"Unknown column{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
            f"Columns are: {', '.join(input_columns)}."
        )
    return list(dict.fromkeys(column for column in matched if column is not None))
