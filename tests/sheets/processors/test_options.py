"""Processor options: typed values, defaults and one message per bad option
(sheets/processors/options.py)."""

from __future__ import annotations

import pytest

from sheets.processors import Option, OptionsError, processor

OPTIONS = [
    Option("name", "Name", "str", required=True),
    Option("note", "Note", "text", default="  keep  "),
    Option("count", "Count", "int", default=3, min=1, max=10),
    Option("ratio", "Ratio", "float", default=0.5, min=0, max=1),
    Option("loud", "Loud", "bool", default=False),
    Option("mode", "Mode", "choice", default="fast", choices=("fast", "slow")),
    Option("token", "Token", "secret", default=""),
    Option("endpoint", "Endpoint", "url", default=lambda: "https://default.example/v1"),
    Option("fields", "Fields", "columns"),
]


@pytest.fixture
def configurable(registered):
    proc = processor("test.options", options=OPTIONS, outputs=["x"])(lambda row, o: {"x": 1})
    registered.append("test.options")
    return proc


def test_options_are_typed_and_defaults_filled(configurable):
    options = configurable.validate_options(
        {"name": " Ada ", "count": "7", "loud": "on", "fields": "Email, city"},
        ["email", "City", "zip"],
    )
    assert options == {
        "name": "Ada",
        "note": "  keep  ",
        "count": 7,
        "ratio": 0.5,
        "loud": True,
        "mode": "fast",
        "token": "",
        "endpoint": "https://default.example/v1",
        "fields": ["email", "City"],
    }


def test_validated_options_validate_again_unchanged(configurable):
    columns = ["email", "city"]
    options = configurable.validate_options({"name": "Ada", "fields": "city"}, columns)
    assert configurable.validate_options(options, columns) == options


def test_every_invalid_option_gets_its_own_message(configurable):
    with pytest.raises(OptionsError) as caught:
        configurable.validate_options(
            {
                "count": "11",
                "ratio": "lots",
                "loud": "maybe",
                "mode": "medium",
                "endpoint": "ftp://files.example",
                "fields": "email, phone, fax",
                "colour": "red",
            },
            ["email", "city"],
        )
    errors = caught.value.errors
    assert errors == {
        "name": "This field is required.",
        "count": "Must be at most 10.",
        "ratio": "Enter a number.",
        "loud": "Enter yes or no.",
        "mode": "Choose one of: fast, slow.",
        "endpoint": "Enter a full http:// or https:// URL.",
        "fields": "Unknown columns: phone, fax. Columns are: email, city.",
        "colour": "Unknown option.",
    }


def test_numbers_must_be_finite_and_whole_for_int_options(configurable):
    with pytest.raises(OptionsError) as caught:
        configurable.validate_options({"name": "x", "count": "2.5", "ratio": "nan"}, [])
    assert caught.value.errors == {"count": "Enter a whole number.", "ratio": "Enter a number."}


def test_option_declarations_are_checked():
    with pytest.raises(ValueError, match="unknown type"):
        Option("x", "X", "date")
    with pytest.raises(ValueError, match="needs choices"):
        Option("x", "X", "choice")


def test_a_secret_option_must_be_named_like_a_secret_or_it_would_be_stored_in_clear():
    with pytest.raises(ValueError, match="'key': a secret option's name must say so"):
        Option("key", "Key", "secret")
    assert Option("api_key", "Key", "secret").type == "secret"
    assert Option("auth_token", "Token", "secret").type == "secret"
