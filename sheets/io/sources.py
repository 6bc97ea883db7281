"""Streaming readers for uploaded spreadsheets: CSV (encoding and dialect detected) and XLSX.

`open_upload` looks at a file's content, not its name, and returns a `Table`: the header
plus an iterator of data rows as strings, read lazily so memory stays flat whatever the
file size. `sheets.io.importing` turns a Table into stored rows; `sheets.io.google` makes
Tables from Google Sheets. Every problem with the input is a `SourceError` whose text
is shown to the user as is.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.conf import settings

# How much of a CSV the encoding and dialect detectors look at. Detecting on a sample
# keeps detection at ~40 ms whatever the file size (CleverCSV on a whole 200,000-row
# file takes ~20 s); the full decode afterwards is strict, so a bad byte later in the
# file is still reported.
SAMPLE_BYTES = 64 * 1024
DIALECT_SAMPLE_CHARS = 32 * 1024
DELIMITERS = [",", ";", "\t", "|"]
# Western European first: cp1252 wins whenever charset-normalizer finds it as plausible
# as anything else (it mistakes short French or German samples for cp1250 or cp775).
SINGLE_BYTE_ENCODINGS = ["cp1252", "cp1250", "cp1251", "latin_1"]

# Real workbooks compress 5-20x; a member compressed more than this is refused.
ZIP_RATIO_LIMIT = 200
ZIP_RATIO_MIN_BYTES = 1024 * 1024

BINARY_SIGNATURES = [
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x7fELF", "a program"),
]
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


class SourceError(Exception):
    """Input we cannot read; str(error) is a complete message for the user."""


@dataclass
class TableInfo:
    kind: str  # "csv", "xlsx" or "gsheet" (the values of Sheet.Source)
    columns: list[str]  # the header row as read, before validation
    encoding: str = ""
    delimiter: str = ""
    worksheet: str = ""
    worksheets: list[str] = field(default_factory=list)
    title: str = ""  # file name or spreadsheet title


@dataclass
class Table:
    """A header and a lazy iterator of the data rows after it; close() when done."""

    info: TableInfo
    rows: Iterator[list[str]]
    on_close: Callable[[], Any] | None = field(default=None, repr=False)
    # The share of the file read so far (0 to 1), for an import's percentage; None when
    # the source cannot tell (a Google Sheet).
    share_read: Callable[[], float] | None = field(default=None, repr=False)

    def close(self) -> None:
        close_rows = getattr(self.rows, "close", None)
        if close_rows is not None:
            close_rows()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_upload(
    source: IO[bytes] | str | os.PathLike[str], filename: str, *, worksheet: str | None = None
) -> Table:
    """Open an uploaded CSV or XLSX file (a path or a seekable binary file) by its content.

    A path is opened here and closed by `Table.close()`; a file object stays the
    caller's. `worksheet` picks an XLSX worksheet by name (default: the first).
    """
    if isinstance(source, (str, os.PathLike)):
        raw = open(source, "rb")  # noqa: SIM115 - handed to the Table, closed by close()
        try:
            return _open_stream(raw, filename, worksheet, owned=True)
        except BaseException:
            raw.close()
            raise
    return _open_stream(source, filename, worksheet, owned=False)


def _open_stream(raw: IO[bytes], filename: str, worksheet: str | None, *, owned: bool) -> Table:
    raw.seek(0, io.SEEK_END)
    size = raw.tell()
    raw.seek(0)
    check_upload_size(size, filename)
    if size == 0:
        raise SourceError(f"“{filename}” is empty.")
    head = raw.read(8)
    raw.seek(0)
    if head.startswith(ZIP_SIGNATURES):
        table = _open_xlsx(raw, filename, worksheet)
    else:
        table = _open_csv(raw, filename, owned=owned)
    if owned:
        table.on_close = _chain(table.on_close, raw.close)
    table.share_read = lambda: 0.0 if raw.closed else min(raw.tell() / size, 1.0)
    return table


def _chain(first: Callable[[], Any] | None, then: Callable[[], Any]) -> Callable[[], None]:
    def both() -> None:
        if first is not None:
            first()
        then()

    return both


def check_upload_size(size: int, filename: str) -> None:
    """Refuse files over CONVEYOR_MAX_UPLOAD_BYTES (call it before reading an upload)."""
    limit = settings.CONVEYOR_MAX_UPLOAD_BYTES
    if size > limit:
        raise SourceError(
            f"“{filename}” is {human_bytes(size)}; the largest file accepted is "
            f"{human_bytes(limit)} (CONVEYOR_MAX_UPLOAD_BYTES)."
        )


def human_bytes(size: int) -> str:
    """1536 -> "1.5 KB"; for sizes in messages."""
    if size < 1024:
        return f"{size} bytes"
    value, unit = size / 1024, "KB"
    for bigger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def column_name(index: int) -> str:
    """Spreadsheet letter of a 0-based column index: 0 -> A, 27 -> AB."""
    name, number = "", index + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        name = chr(ord("A") + remainder) + name
    return name


# --- CSV ---------------------------------------------------------------------------


def _open_csv(raw: IO[bytes], filename: str, *, owned: bool) -> Table:
    head = raw.read(SAMPLE_BYTES)
    encoding = bomless_utf16(head)  # its NUL bytes would look binary
    if encoding is None:
        reject_binary(head, filename)
        encoding = detect_encoding(_encoding_sample(raw, head), filename)
    text_head = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    reject_html(text_head, filename)
    delimiter, skip_sep_line = _sep_line(text_head)
    quotechar, escapechar = '"', None
    if not delimiter:
        delimiter, quotechar, escapechar = detect_dialect(text_head)
    _allow_cells_up_to(settings.CONVEYOR_MAX_CELL_CHARS)

    raw.seek(0)
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    if skip_sep_line:
        text.readline()
    reader = csv.reader(
        text, delimiter=delimiter, quotechar=quotechar, escapechar=escapechar, strict=False
    )
    rows = _csv_rows(reader, filename, encoding)
    # The wrapper would close a caller's file when collected: detach it instead.
    on_close = text.close if owned else text.detach
    try:
        header = next(rows)
    except StopIteration:
        on_close()
        raise SourceError(f"“{filename}” has no rows: it is empty or only blank.") from None
    except BaseException:
        on_close()
        raise
    info = TableInfo(
        kind="csv", columns=header, encoding=encoding, delimiter=delimiter, title=filename
    )
    return Table(info=info, rows=rows, on_close=on_close)


_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _encoding_sample(raw: IO[bytes], head: bytes) -> bytes:
    """Bytes to detect the encoding from: the head, or the first non-ASCII stretch.

    A head that is plain ASCII says nothing about the encoding, and big exports are
    often ASCII for their first thousands of rows; so look further, 1 MB at a time
    (a regex scan, fast), for the first byte that is not ASCII.
    """
    if not head.isascii():
        return head
    while chunk := raw.read(1024 * 1024):
        found = _NON_ASCII.search(chunk)
        if found:
            stretch = chunk[found.start() : found.start() + SAMPLE_BYTES]
            return stretch + raw.read(SAMPLE_BYTES - len(stretch))
    return head


def _csv_rows(reader: Any, filename: str, encoding: str) -> Iterator[list[str]]:
    try:
        yield from reader
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"“{filename}” is not valid {encoding} text: byte 0x{exc.object[exc.start]:02X} "
            f"near line {reader.line_num + 1} cannot be read. The file mixes text encodings; "
            "save it again as “CSV UTF-8” and upload that."
        ) from None
    except csv.Error as exc:
        raise SourceError(_csv_error_message(exc, filename, reader.line_num)) from None


def _csv_error_message(exc: csv.Error, filename: str, line: int) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (
            f"“{filename}” has a cell longer than {settings.CONVEYOR_MAX_CELL_CHARS:,} "
            f"characters (CONVEYOR_MAX_CELL_CHARS), starting before line {line}. "
            "An opening quote without its closing quote causes this too."
        )
    if "NUL" in text:
        return f"“{filename}” contains binary data (a NUL byte) at line {line}; it is not a CSV."
    return f"“{filename}” could not be read as CSV at line {line}: {text}."


def _allow_cells_up_to(chars: int) -> None:
    """Let the csv module read cells up to our own limit, so our clearer check fires.

    The csv module's limit is process-wide; it is only ever raised, never lowered.
    """
    if csv.field_size_limit() <= chars:
        csv.field_size_limit(chars + 1)


def reject_binary(sample: bytes, filename: str) -> None:
    """Refuse files that are not text: known binary formats, NUL bytes, control codes."""
    if sample.startswith(OLE_SIGNATURE):
        raise SourceError(
            f"“{filename}” is an old-style Excel file (.xls) or a password-protected "
            "workbook. Save it as .xlsx (without a password) or as CSV, then upload that."
        )
    for signature, what in BINARY_SIGNATURES:
        if sample.startswith(signature):
            raise SourceError(f"“{filename}” is {what}, not a spreadsheet. Upload CSV or XLSX.")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    controls = sum(sample.count(bytes([c])) for c in range(32) if c not in (9, 10, 12, 13))
    if b"\x00" in sample or controls > len(sample) // 100:
        raise SourceError(
            f"“{filename}” is not a spreadsheet: it contains binary data. "
            "Upload a CSV (text) or XLSX file."
        )


def bomless_utf16(sample: bytes) -> str | None:
    """ "utf-16-le" or "utf-16-be" for UTF-16 text without a byte-order mark, else None.

    Text in a Latin script saved as UTF-16 has a NUL in every other byte (the high byte
    of each character): in the odd positions for little-endian, the even ones for
    big-endian, and almost never in the others. It must then decode to text without
    control characters; binary data with NULs rarely passes both tests.
    """
    even = sample[: min(len(sample), 4096) // 2 * 2]
    if len(even) < 4 or sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    low_nuls, high_nuls = even[0::2].count(0), even[1::2].count(0)
    pairs = len(even) // 2
    if high_nuls >= pairs / 2 and low_nuls <= pairs / 50:
        encoding = "utf-16-le"
    elif low_nuls >= pairs / 2 and high_nuls <= pairs / 50:
        encoding = "utf-16-be"
    else:
        return None
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(even, final=False)
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return None
    return encoding


_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>])", re.I | re.S)


def reject_html(text_head: str, filename: str) -> None:
    """A web page saved under a .csv name (a share link downloaded instead of the file)."""
    if _HTML_START.match(text_head.lstrip("\ufeff")):
        raise SourceError(
            f"“{filename}” is an HTML page (a web page), not a CSV: it was probably saved "
            "from a link to the sheet rather than downloaded as a file. Download it as "
            "CSV or XLSX (in Google Sheets: File → Download), or paste the Google Sheet "
            "link instead."
        )


def detect_encoding(sample: bytes, filename: str) -> str:
    """Pick the text encoding of a CSV from a sample of its bytes.

    Order: a byte-order mark; UTF-8 if the sample is valid UTF-8 (a character cut at
    the sample's end is fine: the full decode later is strict); else the most
    plausible single-byte code page according to charset-normalizer, preferring cp1252.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if _mixes_utf8(sample):
        raise SourceError(
            f"“{filename}” mixes UTF-8 with another text encoding, so its accented "
            "characters cannot all be read. Save it again as “CSV UTF-8” and upload that."
        )
    return _single_byte_encoding(sample)


_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def _mixes_utf8(sample: bytes) -> bool:
    """True when a sample holds many valid UTF-8 characters next to invalid bytes.

    A cp1252 file produces a valid UTF-8 pair only by accident (say "ß" then "“"), so a
    few are tolerated; many, next to stray bytes, mean two encodings were mixed.
    """
    utf8_chars = _UTF8_MULTIBYTE.findall(sample)
    if len(utf8_chars) < 3:
        return False
    non_ascii = sum(1 for byte in sample if byte >= 0x80)
    stray = non_ascii - sum(len(char) for char in utf8_chars)
    return stray > 0 and len(utf8_chars) * 10 >= stray


def _single_byte_encoding(sample: bytes) -> str:
    import charset_normalizer  # loaded by the processes that read files only

    matches = charset_normalizer.from_bytes(sample, cp_isolation=SINGLE_BYTE_ENCODINGS)
    best = matches.best()
    if best is None:
        try:
            sample.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            return "latin-1"
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + 0.01:
            return "cp1252"
    return codecs.lookup(best.encoding).name


def _sep_line(text: str) -> tuple[str, bool]:
    """Excel's "sep=;" first line names the delimiter; honour it and skip it."""
    found = re.match(r"sep=(.)\r?\n", text)
    return (found.group(1), True) if found else ("", False)


def detect_dialect(text: str) -> tuple[str, str, str | None]:
    """(delimiter, quotechar, escapechar) of a CSV sample, with CleverCSV.

    Measured on 200,000-row files: CleverCSV on a 32 KB sample takes ~35 ms and got
    every test file right, including semicolon files with decimal commas; the stdlib
    Sniffer is faster but less robust on messy data. Parsing then uses the stdlib
    csv module (0.12 s for 200,000 rows, CleverCSV's reader 0.2 s).
    """
    cut = text[:DIALECT_SAMPLE_CHARS]
    if "\n" in cut:
        cut = cut[: cut.rfind("\n") + 1]
    import clevercsv  # ~14 MB: loaded by the processes that import files only

    found = clevercsv.Detector().detect(cut, delimiters=DELIMITERS)
    if found is None or found.delimiter not in DELIMITERS:
        return ",", '"', None  # one column, or nothing to go on
    quotechar = found.quotechar if found.quotechar in ('"', "'") else '"'
    return found.delimiter, quotechar, found.escapechar or None


# --- XLSX ----------------------------------------------------------------------------


def _open_xlsx(raw: IO[bytes], filename: str, worksheet: str | None) -> Table:
    # openpyxl (~25 MB with numpy) is imported where used, not at start-up: every
    # process of a cluster would carry it, and most never read an XLSX.
    import openpyxl

    _skip_dimension_scan()
    check_archive(raw, filename)
    raw.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles it skips
            book = openpyxl.load_workbook(raw, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types on damaged files
        raise _damaged(filename, exc) from None
    try:
        return _xlsx_table(book, filename, worksheet)
    except BaseException:
        book.close()
        raise


def _skip_dimension_scan() -> None:
    """Stop openpyxl from parsing every worksheet once more when it opens a workbook,
    and from keeping a trace of every row it read (`_rows_forgotten`).

    A read-only worksheet looks for its <dimension> element on opening; a workbook
    without one (openpyxl's own write-only output, many exporters) is parsed to the
    end for nothing (measured: 100,000 rows read in 7 s instead of 19 s). The
    dimensions are reset before reading anyway.
    """
    from openpyxl.worksheet import _reader
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    ReadOnlyWorksheet._get_size = _no_size
    _reader.iterparse = _rows_forgotten


def _rows_forgotten(source: Any, *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """openpyxl's worksheet parsing with flat memory: the same "end" events, but each
    <row> read is then removed from <sheetData>. openpyxl only empties it, which keeps an
    empty element per row for the whole read (measured: 1,000,000 rows, +76 MB).
    """
    from openpyxl.xml import functions  # its iterparse: defusedxml's when installed

    sheet_data = None
    for event, element in functions.iterparse(source, events=("start", "end")):
        if event == "start":
            if element.tag == _SHEET_DATA:
                sheet_data = element
            continue
        yield event, element
        if sheet_data is not None and element.tag == _ROW:
            sheet_data.remove(element)


_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_SHEET_DATA, _ROW = f"{_MAIN}sheetData", f"{_MAIN}row"


def _no_size(worksheet: Any) -> None:
    worksheet._min_column = worksheet._min_row = 1
    worksheet._max_column = worksheet._max_row = None


def _xlsx_table(book: Any, filename: str, worksheet: str | None) -> Table:
    names = [sheet.title for sheet in book.worksheets]
    if not names:
        raise SourceError(f"“{filename}” has no worksheets.")
    title = worksheet or names[0]
    if title not in names:
        raise SourceError(
            f"“{filename}” has no worksheet named “{title}”; its worksheets are: "
            + ", ".join(f"“{name}”" for name in names)
            + "."
        )
    sheet = book[title]
    # Writers often store wrong dimensions; without this, rows would be cut to them.
    sheet.reset_dimensions()
    rows = _xlsx_rows(sheet.iter_rows(values_only=True), filename)
    try:
        header = next(rows)
    except StopIteration:
        raise SourceError(f"Worksheet “{title}” of “{filename}” is empty.") from None
    info = TableInfo(kind="xlsx", columns=header, worksheet=title, worksheets=names, title=filename)
    return Table(info=info, rows=rows, on_close=book.close)


def _xlsx_rows(rows: Iterator[tuple[Any, ...]], filename: str) -> Iterator[list[str]]:
    try:
        for row in rows:
            yield [cell_text(value) for value in row]
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types on damaged files
        raise _damaged(filename, exc) from None


def _damaged(filename: str, exc: BaseException) -> SourceError:
    detail = f" ({type(exc).__name__}: {exc})" if str(exc) else ""
    return SourceError(
        f"“{filename}” is a damaged or invalid XLSX workbook and cannot be read{detail}. "
        "Open it in Excel or LibreOffice, save it again as .xlsx, and upload that."
    )


def check_archive(raw: IO[bytes], filename: str) -> None:
    """Refuse ZIP files that are not workbooks, and zip bombs, before unpacking anything.

    The sizes checked are the ones the archive declares; Python's zipfile never
    inflates a member past its declared size (it fails the CRC check instead).
    """
    try:
        with zipfile.ZipFile(raw) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _damaged(filename, exc) from None
    _check_unzipped_size(members, filename)
    names = {member.filename for member in members}
    if "xl/workbook.xml" in names:
        return
    if "xl/workbook.bin" in names:
        what = "a binary Excel workbook (.xlsb)"
    elif "content.xml" in names:
        what = "an OpenDocument file (.ods/.odt)"
    elif "word/document.xml" in names:
        what = "a Word document"
    elif "ppt/presentation.xml" in names:
        what = "a PowerPoint presentation"
    else:
        what = "a ZIP archive"
    raise SourceError(
        f"“{filename}” is {what}, not an XLSX workbook. Save it as .xlsx or CSV and upload that."
    )


def _check_unzipped_size(members: list[zipfile.ZipInfo], filename: str) -> None:
    limit = settings.CONVEYOR_MAX_UNZIPPED_BYTES
    total = sum(member.file_size for member in members)
    if total > limit:
        raise SourceError(
            f"“{filename}” would unpack to {human_bytes(total)}; the limit is "
            f"{human_bytes(limit)} (CONVEYOR_MAX_UNZIPPED_BYTES). "
            "Split the workbook or upload it as CSV."
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > ZIP_RATIO_MIN_BYTES and ratio > ZIP_RATIO_LIMIT:
            raise SourceError(
                f"“{filename}” looks like a zip bomb: “{member.filename}” is compressed "
                f"{ratio:,.0f} to 1, far beyond any real workbook. It was not opened."
            )


def cell_text(value: Any) -> str:
    """A cell value as the text a person expects: 3 not 3.0, ISO dates, TRUE/FALSE."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")  # Excel keeps 15 significant digits
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)
