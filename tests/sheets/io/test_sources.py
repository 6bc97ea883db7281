"""sheets.io.sources: files are read by content, with encoding and dialect detected, streaming.

These tests read files only (no database); what a bad file leaves behind in the
database is tested in test_importing.py.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest

from sheets.io.sources import SourceError, Table, cell_text, open_upload
from tests.sheets import make_files

ACCENTED = [["name", "city", "price"], ["René", "Besançon", "12 €"], ["Zoë", "Köln", "5 €"]]


def read_all(table: Table) -> list[list[str]]:
    with table:
        return list(table.rows)


def open_file(path: Path, **kwargs) -> Table:
    return open_upload(path, path.name, **kwargs)


# --- CSV encodings -----------------------------------------------------------------


def test_utf8_csv_keeps_accents(tmp_path):
    table = open_file(make_files.write_csv(tmp_path / "a.csv", ACCENTED))
    assert table.info.encoding == "utf-8"
    assert table.info.columns == ["name", "city", "price"]
    assert read_all(table) == ACCENTED[1:]


def test_utf8_bom_does_not_end_up_in_the_first_column_name(tmp_path):
    table = open_file(make_files.write_csv(tmp_path / "a.csv", ACCENTED, encoding="utf-8-sig"))
    assert table.info.encoding == "utf-8-sig"
    assert table.info.columns[0] == "name"
    assert read_all(table) == ACCENTED[1:]


def test_cp1252_with_euro_sign_and_accents_is_detected(tmp_path):
    path = make_files.write_csv(tmp_path / "a.csv", ACCENTED, delimiter=";", encoding="cp1252")
    table = open_file(path)
    assert table.info.encoding == "cp1252"
    assert read_all(table) == ACCENTED[1:]


def test_latin1_text_is_read_correctly(tmp_path):
    rows = [["name", "city"], ["José", "São Paulo"], ["François", "Genève"], ["Müller", "Zürich"]]
    table = open_file(make_files.write_csv(tmp_path / "a.csv", rows, encoding="latin-1"))
    # Latin-1 and cp1252 agree on these bytes; cp1252 is preferred as the superset.
    assert table.info.encoding in ("cp1252", "iso8859-1")
    assert read_all(table) == rows[1:]


def test_cyrillic_cp1251_is_not_misread_as_western(tmp_path):
    rows = [["имя", "город"], ["Иван", "Москва"], ["Пётр", "Санкт-Петербург"]]
    table = open_file(make_files.write_csv(tmp_path / "a.csv", rows, encoding="cp1251"))
    assert table.info.encoding == "cp1251"
    assert read_all(table) == rows[1:]


def test_cp1252_accents_after_a_long_ascii_start_are_detected(tmp_path):
    path = make_files.big_csv(tmp_path / "a.csv", 3000)  # ~250 KB of ASCII first
    path.write_bytes(path.read_bytes() + "Café,x,y,z,€\r\n".encode("cp1252"))
    table = open_file(path)
    assert table.info.encoding == "cp1252"
    assert read_all(table)[-1] == ["Café", "x", "y", "z", "€"]


def test_invalid_byte_after_the_detection_sample_is_reported_not_skipped(tmp_path):
    header, *rows = make_files.contacts(3000)  # ~250 KB, beyond the detection sample
    path = make_files.write_csv(tmp_path / "a.csv", [header, ["Zoë", "", "", "", ""], *rows])
    path.write_bytes(path.read_bytes() + "Café,x,y,z,w\r\n".encode("cp1252"))
    table = open_file(path)
    assert table.info.encoding == "utf-8"
    with pytest.raises(SourceError, match=r"not valid utf-8 text: byte 0xE9 near line \d+"):
        read_all(table)


def test_utf16_with_bom_as_excel_saves_unicode_text(tmp_path):
    rows = [["name", "city"], ["Zoë", "Köln"]]
    path = make_files.write_csv(tmp_path / "a.txt", rows, delimiter="\t", encoding="utf-16")
    table = open_file(path)
    assert (table.info.encoding, table.info.delimiter) == ("utf-16", "\t")
    assert read_all(table) == rows[1:]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_utf16_without_bom_is_read_not_called_binary(tmp_path, encoding, delimiter):
    rows = [["name", "city"], ["Zoë", "Köln"], ["Ada", "London"]]
    text = "".join(delimiter.join(row) + "\r\n" for row in rows)
    path = make_files.write_bytes(tmp_path / "a.csv", text.encode(encoding))
    table = open_file(path)
    assert (table.info.encoding, table.info.delimiter) == (encoding, delimiter)
    assert table.info.columns == ["name", "city"]
    assert read_all(table) == rows[1:]


@pytest.mark.parametrize(
    "page",
    [
        "<!DOCTYPE html>\n<html lang=en><head><title>Sheet</title></head><body>a,b</body></html>",
        "\ufeff  <!-- saved --> <html>\n<body><table><tr><td>1</td></tr></table></body></html>",
        "<head><meta charset=utf-8></head>\nname,email\n",
    ],
    ids=["doctype", "comment-then-html", "head-only"],
)
def test_an_html_page_saved_as_csv_is_named_an_html_page(tmp_path, page):
    path = make_files.write_bytes(tmp_path / "export.csv", page.encode("utf-8"))
    with pytest.raises(SourceError, match="is an HTML page") as caught:
        open_file(path)
    assert "header row" not in str(caught.value)


def test_a_csv_mentioning_html_is_still_a_csv(tmp_path):
    path = make_files.write_bytes(tmp_path / "a.csv", b"snippet,n\n<html> tag,1\n")
    assert read_all(open_file(path)) == [["<html> tag", "1"]]


def test_utf8_mixed_with_cp1252_is_refused(tmp_path):
    data = "name\nRené\nCafé\nNoël\nHélène\n".encode() + "Zoë\n".encode("cp1252")
    path = make_files.write_bytes(tmp_path / "a.csv", data)
    with pytest.raises(SourceError, match="mixes UTF-8 with another text encoding"):
        open_file(path)


# --- CSV dialects --------------------------------------------------------------------

TRICKY_ROWS = [
    ["name", "address", "note"],
    ["Doe, John", "1 Main St; Springfield", 'He said "hi"'],
    ["Anna", "Rue de la Paix\nParis", "tab\there"],
    ["Bob", "", "plain"],
]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_delimiter_is_detected_with_quoted_delimiters_and_newlines(tmp_path, delimiter):
    path = make_files.write_csv(tmp_path / "a.csv", TRICKY_ROWS, delimiter=delimiter)
    table = open_file(path)
    assert table.info.delimiter == delimiter
    assert table.info.columns == TRICKY_ROWS[0]
    assert read_all(table) == TRICKY_ROWS[1:]


def test_semicolon_file_with_decimal_commas(tmp_path):
    rows = [["id", "price", "qty"]] + [[str(i), f"{i},50", f"{i},5"] for i in range(50)]
    table = open_file(make_files.write_csv(tmp_path / "a.csv", rows, delimiter=";"))
    assert table.info.delimiter == ";"
    assert read_all(table)[3] == ["3", "3,50", "3,5"]


def test_excel_sep_line_sets_the_delimiter_and_is_skipped(tmp_path):
    path = make_files.write_bytes(tmp_path / "a.csv", b"sep=|\r\nname|city\r\nAnn|Paris, FR\r\n")
    table = open_file(path)
    assert (table.info.delimiter, table.info.columns) == ("|", ["name", "city"])
    assert read_all(table) == [["Ann", "Paris, FR"]]


def test_single_column_file(tmp_path):
    path = make_files.write_bytes(tmp_path / "a.csv", b"email\na@x.com\nb@x.com\n")
    table = open_file(path)
    assert table.info.columns == ["email"]
    assert read_all(table) == [["a@x.com"], ["b@x.com"]]


def test_unbalanced_quote_is_reported_as_a_huge_cell(tmp_path, settings):
    settings.CONVEYOR_MAX_CELL_CHARS = 32_767
    body = b'name,note\nAnn,"never closed\n' + b"more text,\n" * 20_000
    table = open_file(make_files.write_bytes(tmp_path / "a.csv", body))
    with pytest.raises(SourceError, match="cell longer than 32,767 characters.*closing quote"):
        read_all(table)


# --- XLSX ------------------------------------------------------------------------------


def test_xlsx_reads_the_first_worksheet_by_default_and_lists_all(tmp_path):
    path = make_files.write_xlsx(
        tmp_path / "b.xlsx", {"People": [["name"], ["Ann"]], "Orders": [["id"], [7]]}
    )
    table = open_file(path)
    assert (table.info.kind, table.info.worksheet) == ("xlsx", "People")
    assert table.info.worksheets == ["People", "Orders"]
    assert read_all(table) == [["Ann"]]


def test_xlsx_second_worksheet_can_be_chosen(tmp_path):
    path = make_files.write_xlsx(
        tmp_path / "b.xlsx",
        {"People": [["name"], ["Ann"]], "Orders": [["id", "total"], [7, 19.5], [8, 20]]},
    )
    table = open_file(path, worksheet="Orders")
    assert (table.info.worksheet, table.info.columns) == ("Orders", ["id", "total"])
    assert read_all(table) == [["7", "19.5"], ["8", "20"]]


def test_unknown_worksheet_message_lists_the_worksheets(tmp_path):
    path = make_files.write_xlsx(tmp_path / "b.xlsx", {"People": [["a"]], "Orders": [["b"]]})
    with pytest.raises(SourceError, match="no worksheet named “Nope”.*“People”, “Orders”"):
        open_file(path, worksheet="Nope")


def test_xlsx_numbers_dates_and_booleans_render_as_a_person_reads_them(tmp_path):
    header = [f"c{i}" for i in range(len(make_files.TYPED_ROW))]
    path = make_files.write_xlsx(tmp_path / "b.xlsx", {"S": [header, make_files.TYPED_ROW]})
    assert read_all(open_file(path)) == [make_files.TYPED_ROW_TEXT]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1 + 0.2, "0.3"), (1e20, "1e+20"), (-4.0, "-4"), (1234567.891, "1234567.891")],
)
def test_float_rendering_matches_excel_display(value, text):
    assert cell_text(value) == text


def test_xlsx_with_wrong_stored_dimensions_is_read_whole(tmp_path):
    path = make_files.write_xlsx(tmp_path / "b.xlsx", {"S": [["a", "b"], [1, 2], [3, 4, 5]]})
    make_files.understate_dimensions(path)
    table = open_file(path)
    assert table.info.columns == ["a", "b"]
    assert read_all(table) == [["1", "2"], ["3", "4", "5"]]


# --- type by content, not by name -------------------------------------------------------


def test_xlsx_named_csv_is_read_as_xlsx(tmp_path):
    path = make_files.write_xlsx(tmp_path / "really-a-workbook.csv", {"S": [["a"], ["x"]]})
    table = open_file(path)
    assert table.info.kind == "xlsx"
    assert read_all(table) == [["x"]]


def test_csv_named_xlsx_is_read_as_csv(tmp_path):
    path = make_files.write_csv(tmp_path / "really-text.xlsx", [["a", "b"], ["1", "2"]])
    table = open_file(path)
    assert table.info.kind == "csv"
    assert read_all(table) == [["1", "2"]]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: make_files.write_bytes(p, make_files.PDF_BYTES), "is a PDF document"),
        (
            lambda p: make_files.write_bytes(p, make_files.OLE_BYTES),
            r"old-style Excel file \(.xls\)",
        ),
        (lambda p: make_files.write_bytes(p, make_files.BINARY_BYTES), "contains binary data"),
        (make_files.word_document, "is a Word document, not an XLSX workbook"),
        (make_files.truncated_xlsx, "damaged or invalid XLSX workbook"),
        (make_files.corrupt_xlsx, "damaged or invalid XLSX workbook"),
        (make_files.zip_bomb, "looks like a zip bomb"),
        (lambda p: make_files.write_bytes(p, b""), "is empty"),
    ],
    ids=["pdf", "xls", "binary", "docx", "truncated-xlsx", "corrupt-xlsx", "zip-bomb", "empty"],
)
def test_files_that_are_not_spreadsheets_get_a_clear_message(tmp_path, make, message):
    path = make(tmp_path / "upload.csv")
    with pytest.raises(SourceError, match=message) as caught:
        open_file(path)
    assert "“upload.csv”" in str(caught.value)


def test_unzipped_size_limit_is_named(tmp_path, settings):
    settings.CONVEYOR_MAX_UNZIPPED_BYTES = 100 * 1024
    path = make_files.write_xlsx(tmp_path / "b.xlsx", {"S": list(make_files.contacts(2000))})
    with pytest.raises(
        SourceError,
        match=r"would unpack to [\d.]+ KB; the limit is 100 KB \(CONVEYOR_MAX_UNZIPPED_BYTES\)",
    ):
        open_file(path)


def test_upload_size_limit_is_named(tmp_path, settings):
    settings.CONVEYOR_MAX_UPLOAD_BYTES = 1024
    path = make_files.big_csv(tmp_path / "a.csv", 100)
    with pytest.raises(
        SourceError, match=r"is \d+(\.\d)? KB; .* 1 KB \(CONVEYOR_MAX_UPLOAD_BYTES\)"
    ):
        open_file(path)


# --- streaming ------------------------------------------------------------------------


def test_file_objects_stay_open_for_the_caller(tmp_path):
    stream = io.BytesIO(b"a,b\n1,2\n")
    assert read_all(open_upload(stream, "a.csv")) == [["1", "2"]]
    assert not stream.closed


def test_200k_row_csv_is_read_streaming_with_flat_memory(tmp_path):
    path = make_files.big_csv(tmp_path / "big.csv", 200_000)
    assert path.stat().st_size > 15_000_000
    tracemalloc.start()
    try:
        with open_file(path) as table:
            count = sum(1 for _ in table.rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB while reading a 15 MB file"
