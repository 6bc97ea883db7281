"""Builders for the spreadsheet files the sheets tests feed in, good and bad.

Everything is generated into the test's tmp_path (openpyxl for XLSX, zipfile for the
broken and malicious archives), so no binaries are committed.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import openpyxl


def write_csv(
    path: Path,
    rows: Iterable[list[Any]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_xlsx(path: Path, worksheets: dict[str, list[list[Any]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in worksheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def understate_dimensions(path: Path) -> Path:
    """Rewrite a workbook's stored sheet size to A1:A1, as some writers get it wrong."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:A1"', data)
            archive.writestr(item, data)
    return path


def contacts(count: int) -> Iterable[list[str]]:
    """A header and `count` plausible data rows."""
    yield ["name", "email", "phone", "website", "company"]
    for number in range(1, count + 1):
        yield [
            f"Person {number}",
            f"person{number}@example.com",
            f"+1 415 555 {number % 10000:04d}",
            f"https://site{number}.example.com",
            f"Company {number % 97}",
        ]


def big_csv(path: Path, rows: int) -> Path:
    return write_csv(path, contacts(rows))


def big_xlsx(path: Path, rows: int) -> Path:
    """`contacts(rows)` as a workbook, written in openpyxl's streaming mode: tens of
    thousands of rows in seconds, for tests that need an upload whose parse takes long."""
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    for row in contacts(rows):
        sheet.append(row)
    book.save(path)
    return path


def zip_bomb(path: Path, inflated_bytes: int = 64 * 1024 * 1024) -> Path:
    """A workbook-shaped archive whose sheet inflates ~1000:1 (zeros compress that well)."""
    chunk = b"0" * (1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as member:
            for _ in range(inflated_bytes // len(chunk)):
                member.write(chunk)
    return path


def truncated_xlsx(path: Path) -> Path:
    """A real workbook cut in half, as an interrupted download leaves it."""
    whole = io.BytesIO()
    book = openpyxl.Workbook()
    for number in range(200):
        book.active.append([f"row {number}", number])
    book.save(whole)
    data = whole.getvalue()
    return write_bytes(path, data[: len(data) // 2])


def corrupt_xlsx(path: Path) -> Path:
    """A valid ZIP with workbook parts whose XML is garbage."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types")
        archive.writestr("xl/workbook.xml", "not xml at all <<<")
        archive.writestr("xl/_rels/workbook.xml.rels", "\x00\x01")
    return path


def word_document(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")
    return path


PDF_BYTES = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
OLE_BYTES = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
BINARY_BYTES = bytes(range(256)) * 16

TYPED_ROW = [
    3.0,
    2.5,
    42,
    True,
    datetime.date(2024, 3, 1),
    datetime.datetime(2024, 3, 1, 9, 30),
    None,
    "text",
]
TYPED_ROW_TEXT = ["3", "2.5", "42", "TRUE", "2024-03-01", "2024-03-01 09:30:00", "", "text"]
