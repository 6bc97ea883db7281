"""The `clean` processor (sheets/processors/builtins/clean.py)."""

from __future__ import annotations

import pytest

from sheets.processors import DEDUPE_KEY, OptionsError, get_processor, run_rows

NEVER = lambda: False  # noqa: E731
CLEAN = get_processor("clean")
COLUMNS = ["Name", "Work E-mail", "phoneNumber", "Website", "City"]


@pytest.fixture(autouse=True)
def phone_region(settings):
    settings.CONVEYOR_PHONE_REGION = "US"


def clean_rows(rows: list[dict[str, str]], columns: list[str] = COLUMNS, **raw) -> list:
    options = CLEAN.validate_options(raw, columns)
    numbered = list(enumerate(rows, start=1))
    return [o.outputs for o in run_rows(CLEAN, options, numbered, should_stop=NEVER)]


def clean_one(columns: list[str] = COLUMNS, **row_and_options) -> dict:
    raw = {k: v for k, v in row_and_options.items() if k not in columns}
    row = {column: row_and_options.get(column, "") for column in columns}
    [outputs] = clean_rows([row], columns, **raw)
    return outputs


def row(**values: str) -> dict[str, str]:
    return {column: values.get(column.replace(" ", "_").replace("-", ""), "") for column in COLUMNS}


# --- columns and options -------------------------------------------------------------


def test_email_phone_and_url_columns_are_detected_from_headers():
    columns = [*COLUMNS, "Hotel", "Site ID", "mailing list", "Blog link", "EMAIL2"]
    options = CLEAN.validate_options({}, columns)
    assert options["email_columns"] == ["Work E-mail", "EMAIL2"]
    assert options["phone_columns"] == ["phoneNumber"]
    assert options["url_columns"] == ["Website", "Blog link"]
    assert options["dedupe_on"] == ["Work E-mail"]
    assert options["phone_region"] == "US"


def test_a_column_already_claimed_is_not_detected_as_another_kind():
    options = CLEAN.validate_options({"phone_columns": "Website"}, COLUMNS)
    assert (options["phone_columns"], options["url_columns"]) == (["Website"], [])


def test_columns_given_explicitly_replace_detection():
    options = CLEAN.validate_options(
        {"email_columns": "city", "url_columns": "", "detect_columns": "no"}, COLUMNS
    )
    assert options["email_columns"] == ["City"]
    assert (options["phone_columns"], options["url_columns"]) == ([], [])
    assert options["dedupe_on"] == ["City"]


def test_outputs_are_a_clean_column_per_input_then_issues_and_duplicate_of():
    options = CLEAN.validate_options({}, ["a", "b"])
    assert CLEAN.output_columns(options, ["a", "b"]) == [
        "clean_a",
        "clean_b",
        "issues",
        "duplicate_of",
    ]


def test_invalid_options_are_reported_per_field():
    with pytest.raises(OptionsError) as caught:
        CLEAN.validate_options(
            {"phone_region": "Narnia", "case": "shouty", "dedupe_on": "Email"}, COLUMNS
        )
    assert caught.value.errors == {
        "case": "Choose one of: keep, lower, upper, title.",
        "dedupe_on": "Unknown column: Email. Columns are: Name, Work E-mail, phoneNumber, "
        "Website, City.",
    }
    with pytest.raises(OptionsError) as caught:
        CLEAN.validate_options(
            {"phone_region": "Narnia", "phone_columns": "Website", "url_columns": "website"},
            COLUMNS,
        )
    assert caught.value.errors == {
        "phone_region": "Enter a two-letter country code such as US, GB or DE.",
        "url_columns": "Website is already a phone column.",
    }


# --- values -------------------------------------------------------------------------


def test_whitespace_is_trimmed_and_collapsed_everywhere():
    out = clean_one(Name="  Ada \t  Lovelace\u00a0 ", City="\u200bLondon\n", case="keep")
    assert (out["clean_Name"], out["clean_City"]) == ("Ada Lovelace", "London")
    assert out["issues"] == ""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("keep", "aDa o'neil-SMITH"),
        ("lower", "ada o'neil-smith"),
        ("upper", "ADA O'NEIL-SMITH"),
        ("title", "Ada O'neil-Smith"),
    ],
)
def test_case_applies_to_text_columns_only(case, expected):
    out = clean_one(Name="aDa o'neil-SMITH", **{"Work E-mail": "Ada@Example.com"}, case=case)
    assert out["clean_Name"] == expected
    assert out["clean_Work E-mail"] == "ada@example.com"


@pytest.mark.parametrize(
    ("value", "cleaned", "issue"),
    [
        (" John.Doe@Example.COM ", "john.doe@example.com", ""),
        ("not-an-email", "not-an-email", "invalid email"),
        ("ada@localhost", "ada@localhost", "invalid email"),
        ("two@@signs.com", "two@@signs.com", "invalid email"),
    ],
)
def test_emails_are_validated_and_normalised(value, cleaned, issue):
    out = clean_one(**{"Work E-mail": value})
    assert (out["clean_Work E-mail"], out["issues"]) == (cleaned, issue)


@pytest.mark.parametrize(
    ("value", "region", "cleaned", "issue"),
    [
        ("(415) 555-2671", "US", "+14155552671", ""),
        ("+44 20 7946 0958", "US", "+442079460958", ""),
        ("020 7946 0958", "GB", "+442079460958", ""),
        ("415-555-2671 x12", "US", "+14155552671 ext. 12", ""),
        ("123", "US", "123", "phone too short"),
        ("+1 415 555 26719999", "US", "+1 415 555 26719999", "phone too long"),
        ("call me", "US", "call me", "invalid phone"),
    ],
)
def test_phones_become_e164_using_the_default_region(value, region, cleaned, issue):
    out = clean_one(phoneNumber=value, phone_region=region.lower())
    assert (out["clean_phoneNumber"], out["issues"]) == (cleaned, issue)


def test_the_default_phone_region_comes_from_settings(settings):
    settings.CONVEYOR_PHONE_REGION = "GB"
    assert clean_one(phoneNumber="020 7946 0958")["clean_phoneNumber"] == "+442079460958"


@pytest.mark.parametrize(
    ("value", "cleaned", "issue"),
    [
        ("Example.COM/About?Q=1", "https://example.com/About?Q=1", ""),
        ("HTTP://WWW.Example.com:8080", "http://www.example.com:8080", ""),
        ("//cdn.example.org/x.js", "https://cdn.example.org/x.js", ""),
        ("https://bücher.de", "https://bücher.de", ""),
        ("not a url", "not a url", "invalid url"),
        ("ftp://files.example.com", "ftp://files.example.com", "invalid url"),
        ("https://exa_mple.com", "https://exa_mple.com", "invalid url"),
        ("http://example.com:99999", "http://example.com:99999", "invalid url"),
    ],
)
def test_urls_get_a_scheme_and_a_lower_case_host(value, cleaned, issue):
    out = clean_one(Website=value)
    assert (out["clean_Website"], out["issues"]) == (cleaned, issue)


def test_all_issues_of_a_row_are_listed_together():
    out = clean_one(**{"Work E-mail": "nope", "phoneNumber": "12", "Website": "bad url"})
    assert out["issues"] == "invalid email; phone too short; invalid url"


def test_issues_name_the_column_when_several_share_a_kind():
    columns = ["email", "backup email"]
    out = clean_one(columns, email="a@example.com", **{"backup email": "broken"})
    assert out["issues"] == "invalid email in backup email"


def test_empty_cells_are_fine():
    out = clean_one()
    assert out["issues"] == ""
    assert DEDUPE_KEY not in out


# --- duplicates -------------------------------------------------------------------------


def test_the_dedupe_key_is_the_normalised_email_by_default():
    first, second, other = clean_rows(
        [
            row(Name="Ada", Work_Email="Ada@Example.com"),
            row(Name="ADA L.", Work_Email="  ada@EXAMPLE.com "),
            row(Name="Ada", Work_Email="grace@example.com"),
        ]
    )
    assert first[DEDUPE_KEY] == second[DEDUPE_KEY] == "ada@example.com"
    assert other[DEDUPE_KEY] != first[DEDUPE_KEY]
    assert first["duplicate_of"] == second["duplicate_of"] == ""


def test_dedupe_on_several_columns_combines_their_cleaned_values():
    first, second, third = clean_rows(
        [
            row(Name=" ada  lovelace", City="London"),
            row(Name="Ada Lovelace", City="LONDON "),
            row(Name="Ada Lovelace", City="Paris"),
        ],
        dedupe_on="Name, City",
    )
    assert first[DEDUPE_KEY] == second[DEDUPE_KEY]
    assert third[DEDUPE_KEY] != first[DEDUPE_KEY]


def test_phones_written_differently_are_duplicates():
    first, second = clean_rows(
        [row(phoneNumber="(415) 555-2671"), row(phoneNumber="+1 415.555.2671")],
        dedupe_on="phoneNumber",
    )
    assert first[DEDUPE_KEY] == second[DEDUPE_KEY] == "+14155552671"
