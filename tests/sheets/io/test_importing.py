"""sheets.io.importing: a sheet is stored whole, or not at all with a clear message.

Every kind of bad input the spec lists has a test here asserting the message and that
no Sheet or SheetRow is left behind.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from sheets.io.importing import preview_rows, sheet_from_upload, sheet_import
from sheets.io.sources import SourceError, open_upload
from sheets.models import Sheet, SheetRow
from tests.sheets import make_files

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).resolve().parents[3] / "sheets" / "samples" / "contacts.csv"


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def upload_file(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes())


def import_bytes(owner, name: str, data: bytes) -> Sheet:
    return sheet_from_upload(upload=upload(name, data), owner=owner)


def assert_refused(owner, file: SimpleUploadedFile, message: str) -> SourceError:
    with pytest.raises(SourceError, match=message) as caught:
        sheet_from_upload(upload=file, owner=owner)
    assert Sheet.objects.count() == 0
    assert SheetRow.objects.count() == 0
    return caught.value


# --- what a good import stores ----------------------------------------------------------


def test_sample_contacts_sheet_imports_with_its_messy_values_intact(user):
    sheet = sheet_from_upload(upload=upload_file(SAMPLE), owner=user)
    assert (sheet.name, sheet.source, sheet.encoding, sheet.delimiter) == (
        "contacts.csv",
        Sheet.Source.CSV,
        "utf-8",
        ",",
    )
    assert sheet.columns == ["name", "email", "phone", "website", "company"]
    assert sheet.row_count == 30 == sheet.rows.count()
    second = sheet.rows.get(number=2).values
    assert second[:2] == ["  bob SMITH  ", "Bob.Smith@Example.COM"]  # stored as given
    quoted = sheet.rows.get(number=23).values
    assert quoted[0] == "Wang, Li" and quoted[4] == "Wang Trading Co., Ltd."


def test_rows_are_numbered_from_one_and_sliceable(user, tmp_path):
    path = make_files.big_csv(tmp_path / "a.csv", 50)
    sheet = sheet_from_upload(upload=upload_file(path), owner=user)
    window = sheet.rows.filter(number__gte=11, number__lt=21).order_by("number")
    assert [row.number for row in window] == list(range(11, 21))
    assert window[0].values[0] == "Person 11"
    assert all(len(row.values) == len(sheet.columns) for row in sheet.rows.all())


def test_preview_rows_are_the_first_rows_in_order(user, tmp_path):
    sheet = sheet_from_upload(
        upload=upload_file(make_files.big_csv(tmp_path / "a.csv", 30)), owner=user
    )
    preview = preview_rows(sheet, limit=5)
    assert [row.number for row in preview] == [1, 2, 3, 4, 5]
    assert preview[0].values[1] == "person1@example.com"


def test_xlsx_upload_of_a_chosen_worksheet(user, tmp_path):
    path = make_files.write_xlsx(
        tmp_path / "book.xlsx", {"First": [["a"], ["1"]], "Second": [["x", "y"], [1, 2], [3, 4]]}
    )
    sheet = sheet_from_upload(upload=upload_file(path), owner=user, worksheet="Second")
    assert (sheet.source, sheet.worksheet, sheet.columns) == ("xlsx", "Second", ["x", "y"])
    assert [row.values for row in sheet.rows.order_by("number")] == [["1", "2"], ["3", "4"]]


def test_upload_spooled_to_a_temporary_file_is_read_from_disk(user, tmp_path):
    data = make_files.big_csv(tmp_path / "a.csv", 10).read_bytes()
    spooled = TemporaryUploadedFile("big.csv", "text/csv", len(data), None)
    spooled.write(data)
    spooled.seek(0)
    sheet = sheet_from_upload(upload=spooled, owner=user)
    assert sheet.row_count == 10


def test_short_rows_are_padded_and_empty_extra_cells_dropped(user):
    sheet = import_bytes(user, "a.csv", b"a,b,c\n1\n1,2,3,,\n1,2\n")
    assert [row.values for row in sheet.rows.order_by("number")] == [
        ["1", "", ""],
        ["1", "2", "3"],
        ["1", "2", ""],
    ]


def test_header_names_are_trimmed_and_trailing_empty_columns_dropped(user):
    sheet = import_bytes(user, "a.csv", b" name ,\temail  ,,\nAnn,a@x.com,,\n")
    assert sheet.columns == ["name", "email"]
    assert sheet.rows.get().values == ["Ann", "a@x.com"]


def test_blank_rows_inside_are_kept_and_trailing_ones_dropped(user):
    sheet = import_bytes(user, "a.csv", b"a,b\n1,2\n\n,\n3,4\n\n,\n\n")
    assert sheet.row_count == 4
    assert [row.values for row in sheet.rows.order_by("number")] == [
        ["1", "2"],
        ["", ""],
        ["", ""],
        ["3", "4"],
    ]


def test_sheet_import_takes_source_details_from_the_table(user, tmp_path):
    path = make_files.write_csv(
        tmp_path / "a.csv", [["a", "b"], ["é", "ü"]], delimiter=";", encoding="cp1252"
    )
    sheet = sheet_import(table=open_upload(path, "a.csv"), owner=user, name="Named")
    assert (sheet.name, sheet.encoding, sheet.delimiter) == ("Named", "cp1252", ";")
    assert sheet.rows.get().values == ["é", "ü"]


# --- bad input: a message and nothing stored -----------------------------------------


def test_empty_file(user):
    assert_refused(user, upload("a.csv", b""), "“a.csv” is empty")


def test_header_only_file(user):
    assert_refused(user, upload("a.csv", b"name,email\n"), "header row but no data rows")


def test_header_followed_only_by_blank_rows(user):
    assert_refused(user, upload("a.csv", b"name,email\n,\n\n"), "header row but no data rows")


def test_blank_first_row(user):
    assert_refused(user, upload("a.csv", b",,\nAnn,a@x.com\n"), "first row is empty")


def test_oversize_file(user, settings):
    settings.CONVEYOR_MAX_UPLOAD_BYTES = 10
    assert_refused(user, upload("a.csv", b"name\n" + b"x\n" * 20), r"CONVEYOR_MAX_UPLOAD_BYTES")


def test_binary_file(user):
    assert_refused(user, upload("a.csv", make_files.BINARY_BYTES), "contains binary data")


def test_mislabelled_pdf(user):
    assert_refused(user, upload("report.xlsx", make_files.PDF_BYTES), "“report.xlsx” is a PDF")


def test_old_xls_file(user):
    assert_refused(user, upload("old.xls", make_files.OLE_BYTES), r"old-style Excel file \(.xls\)")


def test_broken_xlsx(user, tmp_path):
    path = make_files.truncated_xlsx(tmp_path / "broken.xlsx")
    assert_refused(user, upload_file(path), "damaged or invalid XLSX workbook")


def test_zip_bomb(user, tmp_path):
    path = make_files.zip_bomb(tmp_path / "bomb.xlsx")
    assert_refused(user, upload_file(path), "looks like a zip bomb")


def test_row_with_a_value_beyond_the_header(user):
    error = assert_refused(
        user, upload("a.csv", b"a,b,c\n1,2,3\n1,2,3\n1,2,3,surprise\n"), "Row 4 has a value"
    )
    assert "column D (“surprise”)" in str(error)


def test_duplicate_headers_name_the_columns(user):
    error = assert_refused(
        user, upload("a.csv", b"email,name,Email,email \nx,y,z,w\n"), "repeats column names"
    )
    assert "“email” (columns A and D)" in str(error)


def test_empty_headers_name_the_columns(user):
    assert_refused(
        user, upload("a.csv", b"name,,phone,\t,city\n1,2,3,4,5\n"), "Columns B and D have no name"
    )


def test_huge_cell_names_the_cell_and_the_limit(user, settings):
    settings.CONVEYOR_MAX_CELL_CHARS = 100
    data = b"a,b,c\n1,2,3\n1,2," + b"x" * 150 + b"\n"
    assert_refused(
        user, upload("a.csv", data), r"Cell C3 holds 150 characters.*CONVEYOR_MAX_CELL_CHARS"
    )


def test_invalid_encoding_late_in_the_file_rolls_back_the_rows_already_stored(user, tmp_path):
    header, *rows = make_files.contacts(8000)  # several batches of UTF-8 before the bad byte
    path = make_files.write_csv(tmp_path / "a.csv", [header, ["Zoë", "", "", "", ""], *rows])
    path.write_bytes(path.read_bytes() + "Café,x,y,z,w\r\n".encode("cp1252"))
    assert_refused(user, upload_file(path), "not valid utf-8 text")


def test_too_many_rows(user, settings, tmp_path):
    settings.CONVEYOR_MAX_ROWS = 100
    path = make_files.big_csv(tmp_path / "a.csv", 101)
    assert_refused(user, upload_file(path), r"more than 100 data rows.*CONVEYOR_MAX_ROWS")


def test_too_many_columns(user, settings):
    settings.CONVEYOR_MAX_COLUMNS = 3
    assert_refused(user, upload("a.csv", b"a,b,c,d\n1,2,3,4\n"), r"4 columns.*CONVEYOR_MAX_COLUMNS")


def test_rows_up_to_the_limits_are_accepted(user, settings, tmp_path):
    settings.CONVEYOR_MAX_ROWS = 100
    settings.CONVEYOR_MAX_COLUMNS = 5
    sheet = sheet_from_upload(
        upload=upload_file(make_files.big_csv(tmp_path / "a.csv", 100)), owner=user
    )
    assert sheet.row_count == 100


# --- scale ------------------------------------------------------------------------------


def test_100k_rows_import_with_a_query_per_batch_not_per_row(
    user, tmp_path, django_assert_max_num_queries
):
    path = make_files.big_csv(tmp_path / "a.csv", 100_000)
    with django_assert_max_num_queries(60):
        sheet = sheet_import(table=open_upload(path, "a.csv"), owner=user, name="big")
    assert sheet.row_count == 100_000
    assert sheet.rows.get(number=100_000).values[0] == "Person 100000"


def test_200k_row_import_streams_with_flat_memory(user, tmp_path):
    path = make_files.big_csv(tmp_path / "big.csv", 200_000)
    table = open_upload(path, "big.csv")
    process = psutil.Process()
    baseline = peak = process.memory_info().rss

    def sampled(rows):
        nonlocal peak
        for number, row in enumerate(rows):
            if number % 5_000 == 0:
                peak = max(peak, process.memory_info().rss)
            yield row

    table.rows = sampled(table.rows)
    sheet = sheet_import(table=table, owner=user, name="big")
    peak = max(peak, process.memory_info().rss)  # RSS seldom shrinks: this covers the inserts
    assert sheet.row_count == 200_000
    # Holding the rows would take >150 MB; streaming stays within a few batches.
    assert peak - baseline < 40_000_000, f"RSS grew {(peak - baseline) / 1e6:.0f} MB"


# --- visibility ------------------------------------------------------------------------------


def test_sheets_are_visible_to_their_owner_and_staff_only(user, other_user, staff_user):
    mine = import_bytes(user, "a.csv", b"a\n1\n")
    theirs = import_bytes(other_user, "b.csv", b"a\n1\n")
    assert list(Sheet.objects.visible_to(user)) == [mine]
    assert list(Sheet.objects.visible_to(other_user)) == [theirs]
    assert set(Sheet.objects.visible_to(staff_user)) == {mine, theirs}


def test_anonymous_users_see_no_sheets(user):
    from django.contrib.auth.models import AnonymousUser

    import_bytes(user, "a.csv", b"a\n1\n")
    assert not Sheet.objects.visible_to(AnonymousUser()).exists()
