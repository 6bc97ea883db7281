"""sheets.io.google: read and write back Google Sheets, against the fake API on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sheets.io.google import open_google_sheet, parse_google_url, write_back
from sheets.io.importing import sheet_from_google
from sheets.io.sources import SourceError
from sheets.models import Sheet, SheetRow

SHEET_ID = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
URL = f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit#gid=1000"
PEOPLE = [["name", "email"], ["Ann", "ann@example.com"], ["Bob", "bob@example.com"]]
ORDERS = [["id", "total"], ["7", "19.50"]]


@pytest.fixture
def contacts(google_sheets):
    google_sheets.add_spreadsheet(SHEET_ID, "Contacts", {"People": PEOPLE, "Orders": ORDERS})
    return google_sheets


def read(table) -> list[list[str]]:
    with table:
        return list(table.rows)


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SHEET_ID, (SHEET_ID, None)),
        (f"  {URL}  ", (SHEET_ID, 1000)),
        (f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit?usp=sharing", (SHEET_ID, None)),
        (f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit?gid=7#gid=7", (SHEET_ID, 7)),
    ],
)
def test_ids_and_links_are_understood(text, expected):
    assert parse_google_url(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/spreadsheets/d/abc/edit",
        "https://docs.google.com/document/d/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/edit",
        "not a sheet",
        "",
    ],
)
def test_bad_link_gets_a_clear_message(text):
    with pytest.raises(SourceError, match="is not a Google Sheets link or id"):
        parse_google_url(text)


# --- reading ---------------------------------------------------------------------------------


def test_reads_the_worksheet_of_the_link(contacts):
    table = open_google_sheet(URL)  # gid=1000 is the second worksheet
    assert (table.info.kind, table.info.title, table.info.worksheet) == (
        "gsheet",
        "Contacts",
        "Orders",
    )
    assert table.info.worksheets == ["People", "Orders"]
    assert table.info.columns == ["id", "total"]
    assert read(table) == [["7", "19.50"]]


def test_reads_the_first_worksheet_of_a_bare_id(contacts):
    table = open_google_sheet(SHEET_ID)
    assert table.info.worksheet == "People"
    assert read(table) == PEOPLE[1:]
    assert contacts.tokens_issued == 1


def test_worksheet_by_name_wins_over_the_link(contacts):
    assert open_google_sheet(URL, worksheet="People").info.worksheet == "People"


def test_unknown_worksheet_lists_the_worksheets(contacts):
    with pytest.raises(SourceError, match="no worksheet named “Nope”; it has: “People”, “Orders”"):
        open_google_sheet(SHEET_ID, worksheet="Nope")


def test_large_sheet_is_read_in_chunks_with_blank_rows_kept(google_sheets):
    rows = [["n"]] + [[str(i)] for i in range(1, 12_001)]
    rows[5_000] = []  # sheet row 5001: the last row of the first chunk, which the API omits
    google_sheets.add_spreadsheet(SHEET_ID, "Big", {"Data": rows}, row_count=13_000)
    values = read(open_google_sheet(SHEET_ID))
    assert values[4_998:5_001] == [["4999"], [], ["5001"]]
    assert values[11_999] == ["12000"]
    assert all(row == [] for row in values[12_000:])  # the grid's empty tail
    # The header, then rows 2-5001, 5002-10001 and 10002-13000.
    assert sum(1 for _, path in google_sheets.requests if "/values/" in path) == 1 + 3


def test_sheet_from_google_stores_the_rows_and_the_id(contacts, user):
    sheet = sheet_from_google(url_or_id=URL, owner=user, worksheet="People")
    assert (sheet.source, sheet.google_id, sheet.worksheet, sheet.name) == (
        Sheet.Source.GSHEET,
        SHEET_ID,
        "People",
        "Contacts",
    )
    assert [row.values for row in sheet.rows.order_by("number")] == PEOPLE[1:]


# --- failures ------------------------------------------------------------------------------


def test_permission_denied_names_the_service_account(contacts, user):
    contacts.forbidden.add(SHEET_ID)
    with pytest.raises(SourceError, match="Share the sheet with that address") as caught:
        sheet_from_google(url_or_id=URL, owner=user)
    assert contacts.service_account_email in str(caught.value)
    assert Sheet.objects.count() == SheetRow.objects.count() == 0


def test_missing_sheet_is_reported(google_sheets):
    with pytest.raises(SourceError, match=f"No Google Sheet with id {SHEET_ID} was found"):
        open_google_sheet(SHEET_ID)


def test_no_credentials_configured(settings):
    settings.CONVEYOR_GOOGLE_CREDENTIALS = ""
    with pytest.raises(SourceError, match="not set up on this server.*CONVEYOR_GOOGLE_CREDENTIALS"):
        open_google_sheet(SHEET_ID)


def test_credentials_from_a_key_file(contacts, settings, tmp_path):
    key = tmp_path / "key.json"
    key.write_text(settings.CONVEYOR_GOOGLE_CREDENTIALS)
    settings.CONVEYOR_GOOGLE_CREDENTIALS = str(key)
    assert read(open_google_sheet(SHEET_ID)) == PEOPLE[1:]


@pytest.mark.parametrize("value", ["/nonexistent/key.json", '{"type": "service_account"}'])
def test_unusable_credentials_setting(settings, value):
    settings.CONVEYOR_GOOGLE_CREDENTIALS = value
    with pytest.raises(SourceError, match="not set up correctly"):
        open_google_sheet(SHEET_ID)


def test_key_the_token_endpoint_rejects(contacts, settings):
    info = json.loads(settings.CONVEYOR_GOOGLE_CREDENTIALS)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings.CONVEYOR_GOOGLE_CREDENTIALS = json.dumps(info)
    with pytest.raises(SourceError, match="Google refused this server's service-account key"):
        open_google_sheet(SHEET_ID)


# --- write-back --------------------------------------------------------------------------


def test_write_back_appends_output_columns_in_one_batch_update(contacts):
    updated = write_back(
        SHEET_ID, "People", ["name", "email"], {"category": ["lead", "client"], "score": ["1", "2"]}
    )
    assert contacts.values(SHEET_ID, "People") == [
        ["name", "email", "category", "score"],
        ["Ann", "ann@example.com", "lead", "1"],
        ["Bob", "bob@example.com", "client", "2"],
    ]
    assert updated == 6
    assert contacts.calls("POST", "/values:batchUpdate") == 1
    assert contacts.calls("PUT", "") == 0


def test_write_back_again_overwrites_its_own_columns_in_place(contacts):
    write_back(SHEET_ID, "People", ["name", "email"], {"category": ["lead", "client"]})
    write_back(SHEET_ID, "People", ["name", "email"], {"category": ["x", "y"], "note": ["n1"]})
    assert contacts.values(SHEET_ID, "People") == [
        ["name", "email", "category", "note"],
        ["Ann", "ann@example.com", "x", "n1"],
        ["Bob", "bob@example.com", "y"],
    ]


def test_write_back_of_a_row_range_starts_at_first_row(contacts):
    write_back(SHEET_ID, "People", ["name", "email"], {"category": ["only bob"]}, first_row=3)
    assert contacts.values(SHEET_ID, "People")[1:] == [
        ["Ann", "ann@example.com"],
        ["Bob", "bob@example.com", "only bob"],
    ]


def test_write_back_stores_formulas_as_text(contacts):
    write_back(SHEET_ID, "People", ["name", "email"], {"out": ['=HYPERLINK("x")', "+1"]})
    assert [row[2] for row in contacts.values(SHEET_ID, "People")[1:]] == ['=HYPERLINK("x")', "+1"]


def test_write_back_grows_a_full_grid_first(google_sheets):
    google_sheets.add_spreadsheet(SHEET_ID, "Tight", {"S": PEOPLE}, row_count=3, column_count=2)
    write_back(SHEET_ID, "S", ["name", "email"], {"category": ["a", "b", "c"]})
    assert google_sheets.calls("POST", f"{SHEET_ID}:batchUpdate") == 1
    assert google_sheets.values(SHEET_ID, "S")[3] == ["", "", "c"]


def test_write_back_refuses_to_overwrite_an_input_column(contacts):
    with pytest.raises(SourceError, match="must not have the name of an input column.*email"):
        write_back(SHEET_ID, "People", ["name", "email"], {"email": ["x", "y"]})
    assert contacts.values(SHEET_ID, "People") == PEOPLE


def test_write_back_without_edit_rights(contacts):
    contacts.forbidden.add(SHEET_ID)
    with pytest.raises(SourceError, match="Editor to write results back"):
        write_back(SHEET_ID, "People", ["name", "email"], {"category": ["a", "b"]})
