"""Prompts: a template over the row's columns (`{column name}`; `{{` and `}}` for literal
braces), the messages sent for a row (with the fields asked for, `fields`), and matching
an answer to the categories."""

from __future__ import annotations

import re
from typing import Any

from sheets.processors import USAGE_KEY, RowError, match_column
from sheets.processors.builtins.llm.fields import parse_fields, response_format, system_message

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
ANSWER_WRAPPING = "\"'`*_ \t\n"
TRAILING_PUNCTUATION = ".!?,;:" + ANSWER_WRAPPING


def template_fields(template: str) -> list[str]:
    """The column names a prompt template uses; ValueError for broken braces."""
    names = [match[1].strip() for match in PLACEHOLDER.finditer(template) if match[1] is not None]
    leftover = PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise ValueError("Unmatched { or } in the prompt; write {{ or }} for a literal brace.")
    if "" in names:
        raise ValueError("Empty {} in the prompt; put a column name inside the braces.")
    return names


def render_prompt(template: str, row: dict[str, str]) -> str:
    """Fill `{column}` placeholders from the row: plain text substitution, nothing else."""

    def replace(match: re.Match[str]) -> str:
        if match[0] in ("{{", "}}"):
            return match[0][0]
        column = match_column(match[1].strip(), list(row))
        return row.get(column, "") if column else ""

    return PLACEHOLDER.sub(replace, template)


def parse_categories(text: str) -> list[str]:
    names = [" ".join(part.split()) for part in re.split(r"[,\n]", text or "")]
    unique: dict[str, str] = {}
    for name in names:
        if name:
            unique.setdefault(name.casefold(), name)
    return list(unique.values())


def build_messages(
    row: dict[str, str], options: dict[str, Any], mode: str = "json_schema"
) -> list[dict[str, str]]:
    """The messages for a row; with `fields`, as asked in `mode` (fields.MODES)."""
    categories = parse_categories(options["categories"])
    fields = parse_fields(options.get("fields", ""))
    if options["prompt"].strip():
        question = render_prompt(options["prompt"], row)
    else:
        record = "\n".join(f"{column}: {value}" for column, value in row.items() if value)
        ask = "What are the fields of" if fields else "Which category fits"
        question = f"{ask} this record?\n\n{record}"
    messages = [{"role": "user", "content": question}]
    if fields:
        messages.insert(0, {"role": "system", "content": system_message(fields, mode)})
    elif categories:
        system = (
            "You sort records into categories. Reply with exactly one of these "
            f"categories and nothing else: {', '.join(categories)}."
        )
        messages.insert(0, {"role": "system", "content": system})
    return messages


def request_format(options: dict[str, Any], mode: str = "json_schema") -> dict[str, Any] | None:
    """The `response_format` sent with each row's messages (None: none)."""
    fields = parse_fields(options.get("fields", ""))
    return response_format(fields, mode) if fields else None


def normalise_answer(text: str) -> str:
    text = text.strip(ANSWER_WRAPPING).rstrip(TRAILING_PUNCTUATION).strip(ANSWER_WRAPPING)
    return " ".join(text.split()).casefold()


def match_category(answer: str, categories: list[str]) -> str:
    wanted = normalise_answer(answer)
    for category in categories:
        if normalise_answer(category) == wanted:
            return category
    shown = " ".join(answer.split())
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise RowError(
        f'the model answered "{shown}", which is not one of the categories '
        f"({', '.join(categories)})"
    )


def answer_columns(answer: str, options: dict[str, Any], tokens: Any, usage: dict) -> dict:
    """A free answer's columns: `answer`, or with categories the `category` it names (a
    RowError otherwise, which keeps what the answer cost: it was paid for all the same)."""
    categories = parse_categories(options["categories"])
    if not categories:
        return {"answer": answer, "tokens": tokens, USAGE_KEY: usage}
    try:
        category = match_category(answer, categories)
    except RowError as exc:
        raise RowError(str(exc), usage=usage) from None
    return {"category": category, "tokens": tokens, USAGE_KEY: usage}
