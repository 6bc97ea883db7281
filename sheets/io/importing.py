"""Import a Table (from `sheets.io.sources` or `sheets.io.google`) into a Sheet and its SheetRows.

The header is validated first; the rows are read, checked and spooled to a temporary
file, then inserted in batches inside one transaction: an import either stores the
whole sheet or, on any SourceError, nothing, and holds the database's write lock only
for the inserts.
Rows are numbered as data rows (1 = first row under the header); messages name rows
as a spreadsheet does (the header is row 1).
"""

from __future__ import annotations

import itertools
import json
import marshal
import secrets
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from sheets.io.sources import (
    SourceError,
    Table,
    TableInfo,
    check_upload_size,
    column_name,
    open_upload,
)
from sheets.models import Sheet, SheetRow

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

# Rows per INSERT. Larger batches gain little on SQLite or PostgreSQL and cost memory.
BATCH_ROWS = 2_000


def sheet_import(*, table: Table, owner: AbstractBaseUser, name: str, google_id: str = "") -> Sheet:
    """Store `table` as a new Sheet of `owner`; raise SourceError and store nothing if bad.

    Source details (kind, encoding, delimiter, worksheet) come from `table.info`; the
    table is closed at the end. The rows are read and checked into a temporary spool
    file first, then inserted in one transaction: reading an XLSX (~30,000 rows/s) or
    a Google Sheet (network calls) inside the transaction would hold SQLite's write
    lock, and stall every worker, for as long as the reading takes.
    """
    with spool_table(table, name, google_id=google_id) as spooled:
        return sheet_from_spooled(spooled, owner=owner)


def unique_name(owner, name: str, exclude: int | None = None) -> str:
    """`name`, or `name (2)`, `name (3)`, ... when the owner already has a sheet so named:
    uploading `good.csv` twice gives two sheets one can tell apart in the list."""
    name = name[:240]
    taken = set(
        Sheet.objects.filter(owner=owner, name__startswith=name)
        .exclude(pk=exclude)
        .values_list("name", flat=True)
    )
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} ({number})"
    return candidate


def _new_sheet(info: TableInfo, owner, name: str, columns: list[str], **fields) -> Sheet:
    return Sheet(
        owner=owner,
        name=unique_name(owner, name),
        source=info.kind,
        worksheet=info.worksheet,
        encoding=info.encoding,
        delimiter=info.delimiter,
        columns=columns,
        **fields,
    )


def store_table(
    sheet: Sheet, table: Table, columns: list[str], on_rows: Callable[[int], None] | None = None
) -> None:
    """Read, check and spool the table's rows (`on_rows(count)` after each batch), then
    save the sheet (ready) and insert its rows in one transaction: all or nothing."""
    spool, count = spool_rows(table, columns, on_rows)
    with spool:
        store_spooled(sheet, spool, count)


def spool_rows(
    table: Table, columns: list[str], on_rows: Callable[[int], None] | None = None
) -> tuple[IO[bytes], int]:
    """The table's rows read and checked into a temporary file, and how many; the caller
    closes the file. Call it outside any transaction: reading is the slow part."""
    spool = tempfile.TemporaryFile(prefix="conveyor-import-")  # noqa: SIM115 - the caller closes it
    try:
        count = _spool(normalised_rows(table.rows, width=len(columns)), spool, on_rows)
        if count == 0:
            raise SourceError(
                "The sheet has a header row but no data rows under it: nothing to process."
            )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, count


def store_spooled(sheet: Sheet, spool: IO[bytes], count: int) -> None:
    """Save the sheet (ready) and insert its spooled rows in one transaction, the only
    time an import holds the database's write lock."""
    with transaction.atomic():
        sheet.row_count = count
        sheet.status = "ready"
        sheet.save()
        _store_rows(sheet, _unspool(spool))


@dataclass
class SpooledTable:
    """A table read and checked into a spool file (`spool_table`), not stored yet:
    `sheet_from_spooled` stores it, in a transaction of its own or of its caller's (an
    import and the job started on it, together). Close it when done."""

    name: str
    info: TableInfo
    columns: list[str]
    spool: IO[bytes]
    rows: int
    google_id: str = ""

    def close(self) -> None:
        self.spool.close()

    def __enter__(self) -> SpooledTable:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def spool_table(
    table: Table,
    name: str,
    *,
    google_id: str = "",
    check_columns: Callable[[list[str]], None] | None = None,
) -> SpooledTable:
    """Read and check a table's rows into a spool file, writing nothing to the database
    (no transaction, so no write lock, for however long the parse takes); closes the
    table. `check_columns(columns)` may refuse the header before the rows are read.
    Raises SourceError."""
    with table:
        columns = clean_header(table.info.columns)
        if check_columns is not None:
            check_columns(columns)
        spool, count = spool_rows(table, columns)
    return SpooledTable(name, table.info, columns, spool, count, google_id)


def spool_upload(
    *,
    upload: UploadedFile,
    worksheet: str | None = None,
    check_columns: Callable[[list[str]], None] | None = None,
) -> SpooledTable:
    """An uploaded file, read and checked into a spool file (`spool_table`)."""
    name = upload.name or "upload"
    check_upload_size(upload.size or 0, name)
    table = open_upload(_source_of(upload), name, worksheet=worksheet)
    return spool_table(table, name, check_columns=check_columns)


def spool_google(*, url_or_id: str, worksheet: str | None = None) -> SpooledTable:
    """A worksheet of a Google Sheet (by URL or id), read with the service account and
    checked into a spool file (`spool_table`)."""
    from sheets.io import google  # gspread + google-auth (~25 MB): loaded for Google imports only

    google_id, _ = google.parse_google_url(url_or_id)
    table = google.open_google_sheet(url_or_id, worksheet=worksheet)
    return spool_table(table, table.info.title, google_id=google_id)


def sheet_from_spooled(spooled: SpooledTable, *, owner: AbstractBaseUser) -> Sheet:
    """Store a spooled table as a new Sheet of `owner`: one short transaction."""
    sheet = _new_sheet(
        spooled.info, owner, spooled.name, spooled.columns, google_id=spooled.google_id
    )
    spooled.spool.seek(0)
    store_spooled(sheet, spooled.spool, spooled.rows)
    return sheet


def kept_upload(name: str) -> Path:
    """The kept upload an import job's params name: a bare file name (`upload`), always
    looked up in DATA_DIR/uploads. Params are shown to users (job page, API, admin), so
    they hold no server path, and a name can point nowhere else."""
    return settings.DATA_DIR / "uploads" / Path(name).name


def sheet_import_later(*, upload: UploadedFile, owner: AbstractBaseUser, worksheet: str | None):
    """A large upload: check its header now (a bad file is refused at once), keep the
    file, and return an importing Sheet, not saved yet (the caller saves it with its
    import job), with the path that job reads (give the job `path.name`: `kept_upload`
    finds it again).

    The job (`sheets.import`) reads, checks and stores the rows with live progress, so
    the request returns at once whatever the file's size; the rows appear all together.
    """
    name = upload.name or "upload"
    check_upload_size(upload.size or 0, name)
    path = kept_upload(f"{secrets.token_hex(8)}-{Path(name).name[-80:]}")
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with open(path, "wb") as kept:
        for chunk in upload.chunks():
            kept.write(chunk)
    try:
        with open_upload(path, name, worksheet=worksheet) as table:
            columns = clean_header(table.info.columns)
            sheet = _new_sheet(table.info, owner, name, columns, status="importing")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return sheet, path


def sheet_from_upload(
    *, upload: UploadedFile, owner: AbstractBaseUser, worksheet: str | None = None
) -> Sheet:
    """Import an uploaded CSV or XLSX file (type detected from its content)."""
    with spool_upload(upload=upload, worksheet=worksheet) as spooled:
        return sheet_from_spooled(spooled, owner=owner)


def _source_of(upload: UploadedFile):
    """The upload's file on disk when Django spooled it there, else its file object."""
    temporary_path = getattr(upload, "temporary_file_path", None)
    return temporary_path() if temporary_path else upload.file


def sheet_from_google(
    *, url_or_id: str, owner: AbstractBaseUser, worksheet: str | None = None
) -> Sheet:
    """Import a worksheet of a Google Sheet (by URL or id) with the service account."""
    with spool_google(url_or_id=url_or_id, worksheet=worksheet) as spooled:
        return sheet_from_spooled(spooled, owner=owner)


def preview_rows(sheet: Sheet, limit: int = 10) -> list[SheetRow]:
    """The first `limit` data rows, for showing a sheet before choosing what to run."""
    return list(sheet.rows.order_by("number")[:limit])


def clean_header(raw: list[str]) -> list[str]:
    """Column names from the header row: trimmed, non-empty, unique, within the limits.

    Trailing columns without a name are dropped (their cells must then be empty,
    which `normalised_rows` checks).
    """
    names = [name.strip() for name in raw]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise SourceError("The first row is empty: it must hold the column names (the header).")
    limit = settings.CONVEYOR_MAX_COLUMNS
    if len(names) > limit:
        raise SourceError(
            f"The sheet has {len(names):,} columns; the most accepted is {limit:,} "
            "(CONVEYOR_MAX_COLUMNS). Remove the columns you don't need and upload it again."
        )
    _check_cell_sizes(names, row=1)
    _check_no_empty_names(names)
    _check_no_duplicate_names(names)
    return names


def _check_no_empty_names(names: list[str]) -> None:
    empty = [column_name(index) for index, name in enumerate(names) if not name]
    if not empty:
        return
    which = f"Column {empty[0]} has" if len(empty) == 1 else f"Columns {_and(empty)} have"
    raise SourceError(
        f"{which} no name in the header row (row 1). Give every column a name, "
        "or delete the columns you don't need."
    )


def _check_no_duplicate_names(names: list[str]) -> None:
    positions: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(names):
        positions[name].append(index)
    repeated = [
        f"“{name}” (columns {_and([column_name(i) for i in where])})"
        for name, where in positions.items()
        if len(where) > 1
    ]
    if repeated:
        raise SourceError(
            f"The header row repeats column names: {'; '.join(repeated)}. "
            "Rename them so every column has its own name."
        )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def normalised_rows(rows: Iterable[list[str]], *, width: int) -> Iterator[list[str]]:
    """Rows of exactly `width` cells: short rows padded, empty extra cells dropped.

    A non-empty cell beyond the header, a cell over the size limit, or more rows than
    allowed raise SourceError. Blank rows are kept (row numbers stay those of the
    source, which write-back relies on) except at the end, where they are dropped.
    """
    max_rows = settings.CONVEYOR_MAX_ROWS
    max_chars = settings.CONVEYOR_MAX_CELL_CHARS  # read once: a setting costs ~1 µs a read
    blank_run = 0
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            row = _fit(row, width, number)
        if not any(row):
            blank_run += 1
            continue
        if number > max_rows:
            raise SourceError(
                f"The sheet has more than {max_rows:,} data rows, the most accepted "
                "(CONVEYOR_MAX_ROWS). Split it into smaller files."
            )
        _check_cell_sizes(row, row=number + 1, limit=max_chars)
        for _ in range(blank_run):
            yield [""] * width
        blank_run = 0
        yield row


def _fit(row: list[str], width: int, number: int) -> list[str]:
    if len(row) < width:
        return row + [""] * (width - len(row))
    for offset, cell in enumerate(row[width:]):
        if cell.strip():
            column = column_name(width + offset)
            raise SourceError(
                f"Row {number + 1} has a value in column {column} (“{_clip(cell)}”), but "
                f"the header names only {width} column{'s' if width > 1 else ''}. Give column "
                f"{column} a name in the header row, or remove the value."
            )
    return row[:width]


def _check_cell_sizes(cells: list[str], *, row: int, limit: int | None = None) -> None:
    limit = limit or settings.CONVEYOR_MAX_CELL_CHARS
    if max(map(len, cells), default=0) <= limit:
        return
    index = next(i for i, cell in enumerate(cells) if len(cell) > limit)
    raise SourceError(
        f"Cell {column_name(index)}{row} holds {len(cells[index]):,} characters; the most "
        f"accepted is {limit:,} (CONVEYOR_MAX_CELL_CHARS, as in Excel). Shorten it."
    )


def _clip(text: str, chars: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _spool(
    rows: Iterable[list[str]], spool: IO[bytes], on_rows: Callable[[int], None] | None = None
) -> int:
    """Write rows to `spool` in batches of BATCH_ROWS; return how many.

    Each batch is one length-prefixed marshal blob: marshal is the fastest serialiser
    for lists of str, and safe here, as this process writes and reads the file.
    """
    count = 0
    remaining = iter(rows)
    while batch := list(itertools.islice(remaining, BATCH_ROWS)):
        blob = marshal.dumps(batch)
        spool.write(len(blob).to_bytes(8, "little"))
        spool.write(blob)
        count += len(batch)
        if on_rows is not None:
            on_rows(count)
    return count


def _unspool(spool: IO[bytes]) -> Iterator[list[list[str]]]:
    while size := int.from_bytes(spool.read(8), "little"):
        yield marshal.loads(spool.read(size))


def _store_rows(sheet: Sheet, batches: Iterable[list[list[str]]]) -> None:
    """Insert the rows, numbered from 1: COPY on PostgreSQL, executemany elsewhere.

    Not bulk_create: building and compiling a model per row made the ORM 80 % of the
    import time. Measured for 100,000 rows: SQLite 40,000 rows/s with bulk_create,
    177,000 with executemany; PostgreSQL 32,000 with bulk_create, 61,000 with
    executemany (psycopg 3 pipelines it), and several times that with COPY.
    """
    connection = transaction.get_connection()  # the real one, not the per-thread proxy
    numbered = enumerate(itertools.chain.from_iterable(batches), start=1)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _copy_rows(cursor, sheet, numbered)
        else:
            _insert_rows(cursor, sheet, numbered)


def _row_table(connection) -> str:
    """The sheet-row table and its columns, quoted: `table ("sheet_id", ...)`."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in ("sheet_id", "number", "values"))
    return f"{quote(SheetRow._meta.db_table)} ({columns})"


def _copy_rows(cursor, sheet: Sheet, numbered: Iterator[tuple[int, list[str]]]) -> None:
    """COPY ... FROM STDIN; PostgreSQL parses each JSON text into the jsonb column."""
    with cursor.copy(f"COPY {_row_table(cursor.db)} FROM STDIN") as copy:
        for number, values in numbered:
            copy.write_row((sheet.pk, number, json.dumps(values)))


def _insert_rows(cursor, sheet: Sheet, numbered: Iterator[tuple[int, list[str]]]) -> None:
    """executemany in batches; values as JSON text, which is what the JSONField stores
    (json.dumps directly: the field's own preparation cost 25 % more a row)."""
    sql = f"INSERT INTO {_row_table(cursor.db)} VALUES (%s, %s, %s)"
    dumps = json.dumps
    while batch := list(itertools.islice(numbered, BATCH_ROWS)):
        cursor.executemany(sql, [(sheet.pk, number, dumps(values)) for number, values in batch])
