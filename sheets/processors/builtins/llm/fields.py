"""Structured fields: `fields` as the user writes them (`company, headcount:int,
size:enum(small|mid|large)`), the JSON schema an answer must follow, the ways of asking
an endpoint for it, and each answer's values checked against their types.

Ways of asking (`MODES`, best first): `json_schema` (strict structured outputs),
`json_object` (JSON mode, the schema in the system message) and `instructed` (the schema
in the system message, no `response_format`) for endpoints that refuse the others.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_FIELDS = 50
MAX_NAME_CHARS = 64
MAX_CHOICES = 100
MAX_CHOICE_CHARS = 100
TYPES = ("str", "int", "float", "bool", "enum")
TYPE_ALIASES = {
    "": "str",
    "string": "str",
    "text": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
}
NAME = re.compile(r"^\w[\w .\-]*$")
SPEC = re.compile(r"^(?P<name>[^:]*?)\s*(?::\s*(?P<type>[^(]*?)\s*(?:\((?P<args>.*)\))?)?$")
RESERVED = ("tokens", "error")  # the llm's own output column, and the export's
MODES = ("json_schema", "json_object", "instructed")
SCHEMA_NAME = "row_fields"
FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
TRUE_WORDS = {"true", "yes", "y"}
FALSE_WORDS = {"false", "no", "n"}
JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "str"
    choices: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.type == "enum":
            return f"{self.name}:enum({'|'.join(self.choices)})"
        return self.name if self.type == "str" else f"{self.name}:{self.type}"


class AnswerProblem(ValueError):
    """An answer that is not the JSON object asked for; the message names each field."""


def split_specs(text: str) -> list[str]:
    """The comma- or newline-separated parts of `text`, commas inside (...) kept."""
    parts, depth, current = [], 0, []
    for char in text or "":
        if char in ",\n" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current.append(char)
    parts.append("".join(current))
    return [" ".join(part.split()) for part in parts if part.strip()]


def parse_fields(text: str) -> list[Field]:
    """The fields of `text`; ValueError with the first problem, said for a user."""
    specs = split_specs(text)
    if len(specs) > MAX_FIELDS:
        raise ValueError(f"At most {MAX_FIELDS} fields ({len(specs)} given).")
    fields: list[Field] = []
    seen: set[str] = set()
    for spec in specs:
        field = parse_field(spec)
        if field.name.casefold() in seen:
            raise ValueError(f"The field {field.name!r} is named twice.")
        seen.add(field.name.casefold())
        fields.append(field)
    return fields


def parse_field(spec: str) -> Field:
    match = SPEC.match(spec)
    name = (match["name"] if match else spec).strip()
    if not name:
        raise ValueError(f"{spec!r}: a field needs a name before the colon.")
    if len(name) > MAX_NAME_CHARS or not NAME.match(name):
        raise ValueError(
            f"{name[:MAX_NAME_CHARS]!r} is not a field name: letters, digits, spaces, _ . - "
            f"(at most {MAX_NAME_CHARS} characters), starting with a letter or digit."
        )
    if name.casefold() in RESERVED:
        raise ValueError(f"{name!r} is the name of a column the llm processor writes itself.")
    if match is None:
        raise ValueError(f"{spec!r}: write name or name:type, e.g. headcount:int.")
    written = (match["type"] or "").strip().lower()
    kind = TYPE_ALIASES.get(written, written)
    if kind not in TYPES:
        raise ValueError(
            f"{name}: unknown type {written!r}; types are {', '.join(TYPES)} "
            "(e.g. size:enum(small|mid|large))."
        )
    if (match["args"] is not None) != (kind == "enum"):
        if kind == "enum":
            raise ValueError(f"{name}: an enum lists its values: {name}:enum(a|b|c).")
        raise ValueError(f"{name}: only enum takes values in (...).")
    if kind != "enum":
        return Field(name, kind)
    return Field(name, "enum", parse_choices(name, match["args"]))


def parse_choices(name: str, text: str) -> tuple[str, ...]:
    unique: dict[str, str] = {}
    for part in text.split("|"):
        choice = " ".join(part.split())
        if len(choice) > MAX_CHOICE_CHARS:
            raise ValueError(f"{name}: a value is longer than {MAX_CHOICE_CHARS} characters.")
        if choice:
            unique.setdefault(choice.casefold(), choice)
    if not unique:
        raise ValueError(f"{name}: the enum has no values; write {name}:enum(a|b|c).")
    if len(unique) > MAX_CHOICES:
        raise ValueError(f"{name}: at most {MAX_CHOICES} enum values.")
    return tuple(unique.values())


def fields_text(fields: list[Field]) -> str:
    """The fields in one spelling (what the options keep)."""
    return ", ".join(map(str, fields))


# --- what is asked for ------------------------------------------------------------------


def json_schema(fields: list[Field]) -> dict[str, Any]:
    """The answer's JSON schema, as strict structured outputs want it: every field
    required, nothing else allowed, null where the text does not say."""
    properties: dict[str, Any] = {}
    for field in fields:
        if field.type == "enum":
            properties[field.name] = {"type": ["string", "null"], "enum": [*field.choices, None]}
        else:
            properties[field.name] = {"type": [JSON_TYPES[field.type], "null"]}
    return {
        "type": "object",
        "properties": properties,
        "required": [field.name for field in fields],
        "additionalProperties": False,
    }


def response_format(fields: list[Field], mode: str) -> dict[str, Any] | None:
    """The request's `response_format` in this mode (None: `instructed`, none sent)."""
    if mode == "json_schema":
        schema = {"name": SCHEMA_NAME, "strict": True, "schema": json_schema(fields)}
        return {"type": "json_schema", "json_schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


KINDS = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false"}


def system_message(fields: list[Field], mode: str) -> str:
    """What the model is told; the fields and their types even where the schema travels
    in `response_format`, as an endpoint may ignore that without saying so."""
    described = "; ".join(
        f"{f.name}: {KINDS.get(f.type) or 'one of ' + ', '.join(f.choices)}" for f in fields
    )
    text = (
        f"You extract fields from records. Reply with a JSON object with these fields: "
        f"{described}. Use null for a field the record does not tell."
    )
    if mode != "json_schema":  # else the schema travels in response_format
        schema = json.dumps(json_schema(fields), ensure_ascii=False)
        text += f" Reply with only that JSON object, following this JSON schema: {schema}"
    return text


def repair_message(problem: str) -> str:
    return (
        f"That answer cannot be used: {problem}. Reply again with only the corrected JSON "
        "object, every field present."
    )


# --- what came back -----------------------------------------------------------------------


def check_answer(answer: str, fields: list[Field]) -> dict[str, Any]:
    """The answer's value of each field, typed (None becomes ""); AnswerProblem naming
    every field that is missing or of the wrong type."""
    text = answer.strip()
    if fenced := FENCE.match(text):
        text = fenced[1]
    try:
        data = json.loads(text)
    except ValueError:
        raise AnswerProblem(f"the answer is not JSON: {shorten(answer)!r}") from None
    if not isinstance(data, dict):
        raise AnswerProblem(f"the answer is not a JSON object: {shorten(answer)!r}")
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in fields:
        if field.name not in data:
            problems.append(f"{field.name}: missing")
            continue
        try:
            values[field.name] = typed(data[field.name], field)
        except ValueError as exc:
            problems.append(f"{field.name}: {exc}")
    if problems:
        raise AnswerProblem("; ".join(problems))
    return values


def typed(value: Any, field: Field) -> Any:
    """A field's value as its type wants it; ValueError saying why not."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, dict | list):
        raise ValueError(f"{shorten(json.dumps(value))!r} is not a single value")
    if field.type == "str":
        return value if isinstance(value, str) else json.dumps(value)
    if field.type == "int":
        return whole_number(value)
    if field.type == "float":
        return number(value)
    if field.type == "bool":
        return truth(value)
    return choice(value, field.choices)


def whole_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = digits(value)
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?\d+\.0*", text):
        return int(text.split(".")[0])
    raise ValueError(f"{shorten(str(value))!r} is not a whole number")


def number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int | float):
        return value
    text = digits(value)
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    raise ValueError(f"{shorten(str(value))!r} is not a number")


def digits(value: Any) -> str:
    """A number as text without its thousands separators: "1,200" -> "1200"."""
    text = str(value).strip().replace("_", "").replace(" ", "")
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", text):
        text = text.replace(",", "")
    return text


def truth(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{shorten(str(value))!r} is not true or false")


def choice(value: Any, choices: tuple[str, ...]) -> str:
    wanted = " ".join(str(value).split()).casefold()
    for option in choices:
        if option.casefold() == wanted:
            return option
    raise ValueError(f"{shorten(str(value))!r} is not one of {', '.join(choices)}")


def shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
