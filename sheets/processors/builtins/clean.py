"""The `clean` processor: tidy every cell, normalise e-mails, phones and URLs, flag duplicates.

Every column gets a `clean_<column>` output: whitespace trimmed and collapsed, and for
plain text columns the chosen case. E-mail columns are validated (syntax only, no DNS)
and lower-cased; phone columns become E.164 (`+14155552671`, an extension kept as
" ext. 12"); URL columns get https:// when they have no scheme and a lower-case host.
Which columns are which is detected from their headers unless given. A value that does
not validate is kept as typed and described in `issues` ("invalid email; phone too
short"); the row still succeeds. The `dedupe_on` columns' cleaned values form the
duplicate key: the sheet handler fills `duplicate_of` with the first row sharing it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import phonenumbers
from django.conf import settings
from email_validator import EmailNotValidError, validate_email

from sheets.processors import DEDUPE_KEY, Option, OptionsError, processor
from sheets.processors.outbound import with_scheme

KINDS = ("email", "phone", "url")
KIND_NAMES = {"email": "an e-mail", "phone": "a phone", "url": "a URL"}
HEADER_WORDS = {
    "email": {"email", "mail", "emails"},
    "phone": {"phone", "tel", "telephone", "mobile", "cell", "fax", "phones"},
    "url": {"url", "website", "site", "link", "homepage", "web", "www", "urls"},
}
NOT_URL_WORDS = {"id", "name", "code", "type", "count"}  # "Site ID" is not a URL
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
TITLE_WORD_START = re.compile(r"(^|[\s\-/(\"])(\w)")
PHONE_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "phone too short",
    phonenumbers.ValidationResult.TOO_LONG: "phone too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "phone has an invalid length",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "phone has an invalid country code",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "phone lacks an area code",
}
PHONE_PARSE_REASONS = {
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "phone too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "phone too short",
    phonenumbers.NumberParseException.TOO_LONG: "phone too long",
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "phone has an invalid country code",
}

COLUMNS_HELP = "None chosen: detected from the headers (when detection is on)."
OPTIONS = [
    Option("case", "Case of text columns", "choice", default="keep",
           choices=("keep", "lower", "upper", "title")),
    Option("email_columns", "E-mail columns", "columns", help=COLUMNS_HELP),
    Option("phone_columns", "Phone columns", "columns", help=COLUMNS_HELP),
    Option("url_columns", "URL columns", "columns", help=COLUMNS_HELP),
    Option("detect_columns", "Detect e-mail, phone and URL columns from headers", "bool",
           default=True),
    Option("phone_region", "Default phone region", "str",
           default=lambda: settings.CONVEYOR_PHONE_REGION,
           help="Two-letter country code for numbers written without +country (e.g. US, GB)."),
    Option("dedupe_on", "Duplicate key columns", "columns",
           help="Rows whose cleaned values of these columns match are duplicates "
           "(default: the e-mail column)."),
]  # fmt: skip


# --- values ---------------------------------------------------------------------


def collapse(value: str) -> str:
    return " ".join(value.translate(INVISIBLE).split())


def apply_case(text: str, case: str) -> str:
    if case == "lower":
        return text.lower()
    if case == "upper":
        return text.upper()
    if case == "title":
        return TITLE_WORD_START.sub(lambda m: m[1] + m[2].upper(), text.lower())
    return text


def clean_email(text: str, options: dict[str, Any]) -> tuple[str, str]:
    try:
        address = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return text, "invalid email"
    return address.normalized.lower(), ""


def clean_phone(text: str, options: dict[str, Any]) -> tuple[str, str]:
    try:
        number = phonenumbers.parse(text, options["phone_region"])
    except phonenumbers.NumberParseException as exc:
        return text, PHONE_PARSE_REASONS.get(exc.error_type, "invalid phone")
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in PHONE_REASONS:
        return text, PHONE_REASONS[reason]
    if not phonenumbers.is_valid_number(number):
        return text, "invalid phone"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return (f"{e164} ext. {number.extension}" if number.extension else e164), ""


def valid_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        labels = host.encode("idna").decode("ascii").split(".")
    except UnicodeError:
        return False
    return (
        len(labels) >= 2
        and all(DOMAIN_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def clean_url(text: str, options: dict[str, Any]) -> tuple[str, str]:
    try:
        parts = urlsplit(with_scheme(text))
        port = parts.port
    except ValueError:
        return text, "invalid url"
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https") or " " in text or not valid_host(host):
        return text, "invalid url"
    userinfo = parts.netloc.rpartition("@")[0]
    shown_host = f"[{host}]" if ":" in host else host
    netloc = (f"{userinfo}@" if userinfo else "") + shown_host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment)), ""


CLEANERS = {"email": clean_email, "phone": clean_phone, "url": clean_url}


# --- options ----------------------------------------------------------------------


def header_kind(column: str) -> str | None:
    """The kind of column a header names ("Work E-mail" -> email, "phoneNumber" -> phone)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", column)
    words = set(re.findall(r"[a-z]+", spaced.lower()))
    kind = next((kind for kind in KINDS if words & HEADER_WORDS[kind]), None)
    return None if kind == "url" and words & NOT_URL_WORDS else kind


def validate_clean(options: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    options = dict(options)
    region = str(options["phone_region"] or "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        errors["phone_region"] = "Enter a two-letter country code such as US, GB or DE."
    options["phone_region"] = region
    claimed: dict[str, str] = {}
    for kind in KINDS:
        name = f"{kind}_columns"
        columns = options[name] or []
        if not columns and options["detect_columns"]:
            columns = [c for c in input_columns if header_kind(c) == kind and c not in claimed]
        if taken := [c for c in columns if c in claimed]:
            errors[name] = f"{', '.join(taken)} is already {KIND_NAMES[claimed[taken[0]]]} column."
        claimed.update(dict.fromkeys(columns, kind))
        options[name] = columns
    if not options["dedupe_on"]:
        options["dedupe_on"] = options["email_columns"][:1]
    if errors:
        raise OptionsError(errors)
    return options


def clean_outputs(options: dict[str, Any], input_columns: list[str]) -> list[str]:
    return [f"clean_{column}" for column in input_columns] + ["issues", "duplicate_of"]


# --- the row function ---------------------------------------------------------------


@processor(
    "clean",
    label="Clean and validate",
    description="Trims whitespace, normalises case, e-mails, phone numbers and URLs, "
    "lists problems per row and flags duplicates.",
    options=OPTIONS,
    outputs=clean_outputs,
    validate=validate_clean,
)
def clean(row: dict[str, str], options: dict[str, Any]) -> dict[str, Any]:
    kinds = {column: kind for kind in KINDS for column in options[f"{kind}_columns"]}
    several = {kind: len(options[f"{kind}_columns"]) > 1 for kind in KINDS}
    outputs: dict[str, Any] = {}
    issues: list[str] = []
    for column, value in row.items():
        text = collapse(value or "")
        kind = kinds.get(column)
        if kind and text:
            text, problem = CLEANERS[kind](text, options)
            if problem:
                issues.append(f"{problem} in {column}" if several[kind] else problem)
        else:
            text = apply_case(text, options["case"])
        outputs[f"clean_{column}"] = text
    outputs["issues"] = "; ".join(issues)
    outputs["duplicate_of"] = ""
    key = [outputs.get(f"clean_{column}", "").casefold() for column in options["dedupe_on"]]
    if any(key):
        outputs[DEDUPE_KEY] = "\x1f".join(key)
    return outputs
