"""Google Sheets as a source and a destination, through gspread and a service account.

`open_google_sheet` reads one worksheet as a `Table`, fetching rows in chunks so memory
stays flat; `write_back` puts output columns to the right of the existing ones in one
values batchUpdate call. Credentials and the API address come from settings
(CONVEYOR_GOOGLE_CREDENTIALS, CONVEYOR_GOOGLE_API_URL); tests point the latter at a
fake server.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gspread
import requests
from django.conf import settings
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account
from gspread.exceptions import APIError, SpreadsheetNotFound
from gspread.http_client import HTTPClient

from sheets.io.sources import SourceError, Table, TableInfo, column_name

SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
GOOGLE_API_URL = "https://sheets.googleapis.com"
# Hosts google-auth and gspread call besides the token endpoint: the Sheets API and
# the IAM "allowed locations" lookup google-auth makes in the background.
GOOGLE_API_HOSTS = (GOOGLE_API_URL, "https://iamcredentials.googleapis.com")
ROWS_PER_REQUEST = 5_000
TIMEOUT_SECONDS = 60

_URL_ID = re.compile(r"/spreadsheets/d/([a-zA-Z0-9_-]+)")
_BARE_ID = re.compile(r"[a-zA-Z0-9_-]{20,}")
_GID = re.compile(r"[#&?]gid=(\d+)")


def google_url(url: str) -> str:
    """`url`, sent to CONVEYOR_GOOGLE_API_URL instead if it is for a Google API host.

    Only when that setting points somewhere else than Google (tests, an emulator);
    token requests go wherever the key's `token_uri` says.
    """
    base = settings.CONVEYOR_GOOGLE_API_URL.rstrip("/")
    if base == GOOGLE_API_URL:
        return url
    for host in GOOGLE_API_HOSTS:
        if url.startswith(host + "/"):
            return base + url[len(host) :]
    return url


class _ConfiguredSession(requests.Session):
    """The session google-auth uses for its own calls (token, allowed-locations lookup)."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, google_url(str(url)), *args, **kwargs)


class ConfiguredHTTPClient(HTTPClient):
    """gspread's HTTP client, sending Google API calls where the settings say."""

    def __init__(self, auth: Any, session: requests.Session | None = None) -> None:
        self.auth = auth
        self.auth_session = _ConfiguredSession()
        if session is None:
            session = AuthorizedSession(auth, auth_request=Request(self.auth_session))
        super().__init__(auth, session)

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, google_url(endpoint), *args, **kwargs)

    def close(self) -> None:
        self.session.close()
        self.auth_session.close()


def parse_google_url(url_or_id: str) -> tuple[str, int | None]:
    """(spreadsheet id, worksheet gid or None) from a sheet's address or bare id."""
    text = url_or_id.strip()
    if _BARE_ID.fullmatch(text):
        return text, None
    parts = urlsplit(text)
    found = _URL_ID.search(parts.path)
    if parts.scheme in ("http", "https") and parts.hostname == "docs.google.com" and found:
        gid = _GID.search(text)
        return found.group(1), int(gid.group(1)) if gid else None
    raise SourceError(
        f"“{_clip(text)}” is not a Google Sheets link or id. Paste the sheet's address, "
        "like https://docs.google.com/spreadsheets/d/…/edit."
    )


def open_google_sheet(url_or_id: str, *, worksheet: str | None = None) -> Table:
    """Read a worksheet of a Google Sheet: the one named, else the link's, else the first."""
    google_id, gid = parse_google_url(url_or_id)
    credentials = _credentials()
    client = _client(credentials)
    try:
        with _google_errors(google_id, credentials):
            spreadsheet = client.open_by_key(google_id)
            tabs = spreadsheet.worksheets()
            tab = _pick_worksheet(tabs, worksheet, gid, spreadsheet.title)
            header = _get_values(spreadsheet, f"{_a1(tab.title)}!1:1")
    except BaseException:
        client.http_client.close()
        raise
    info = TableInfo(
        kind="gsheet",
        columns=header[0] if header else [],
        worksheet=tab.title,
        worksheets=[each.title for each in tabs],
        title=spreadsheet.title,
    )
    rows = _worksheet_rows(spreadsheet, tab, google_id, credentials)
    return Table(info=info, rows=rows, on_close=client.http_client.close)


def write_back(
    google_id: str,
    worksheet: str,
    header: Sequence[str],
    column_values: Mapping[str, Sequence[str]],
    first_row: int = 2,
) -> int:
    """Write output columns into the sheet, right of its columns; return cells updated.

    `header` is the sheet's input header as imported; `column_values` maps each output
    column's name to its values for rows `first_row`, `first_row + 1`, ... An output
    column written before (same name in row 1) is overwritten in place; a new one gets
    a header cell at the right. Values are written RAW, so text like "=1+1" is never
    run as a formula. One structural call if the grid must grow, then one batchUpdate.
    """
    if not column_values:
        return 0
    credentials = _credentials()
    client = _client(credentials)
    with contextlib.closing(client.http_client), _google_errors(google_id, credentials):
        spreadsheet = client.open_by_key(google_id)
        tab = _pick_worksheet(spreadsheet.worksheets(), worksheet or None, None, spreadsheet.title)
        live = _get_values(spreadsheet, f"{_a1(tab.title)}!1:1")
        live_header = [name.strip() for name in (live[0] if live else [])]
        targets = _target_columns(header, live_header, list(column_values))
        longest = max(len(values) for values in column_values.values())
        _grow_grid(
            spreadsheet, tab, rows=first_row + longest - 1, columns=max(targets.values()) + 1
        )
        data = _write_ranges(tab.title, targets, live_header, column_values, first_row)
        response = spreadsheet.values_batch_update({"valueInputOption": "RAW", "data": data})
    return int(response.get("totalUpdatedCells", 0))


def _target_columns(
    header: Sequence[str], live_header: list[str], names: list[str]
) -> dict[str, int]:
    """0-based column of each output: its earlier write-back column, else a new one."""
    inputs = {name.strip() for name in header}
    clashes = [name for name in names if name.strip() in inputs]
    if clashes:
        raise SourceError(
            "Output columns must not have the name of an input column, or writing back "
            f"would overwrite the input: {', '.join(clashes)}."
        )
    used = len(live_header)
    while used and not live_header[used - 1]:
        used -= 1
    next_free = max(used, len(header))
    targets = {}
    for name in names:
        if name.strip() in live_header:
            targets[name] = live_header.index(name.strip())
        else:
            targets[name] = next_free
            next_free += 1
    return targets


def _write_ranges(
    title: str,
    targets: dict[str, int],
    live_header: list[str],
    column_values: Mapping[str, Sequence[str]],
    first_row: int,
) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = []
    for name, index in targets.items():
        letter = column_name(index)
        if index >= len(live_header) or live_header[index] != name.strip():
            data.append({"range": f"{_a1(title)}!{letter}1", "values": [[name]]})
        values = ["" if value is None else str(value) for value in column_values[name]]
        if values:
            last = first_row + len(values) - 1
            data.append(
                {
                    "range": f"{_a1(title)}!{letter}{first_row}:{letter}{last}",
                    "majorDimension": "COLUMNS",
                    "values": [values],
                }
            )
    return data


def _grow_grid(spreadsheet: Any, tab: Any, *, rows: int, columns: int) -> None:
    """Add rows/columns the writes need: the API refuses ranges beyond the grid."""
    requests_ = [
        {"appendDimension": {"sheetId": tab.id, "dimension": dimension, "length": missing}}
        for dimension, missing in (
            ("ROWS", rows - tab.row_count),
            ("COLUMNS", columns - tab.col_count),
        )
        if missing > 0
    ]
    if requests_:
        spreadsheet.batch_update({"requests": requests_})


def _worksheet_rows(
    spreadsheet: Any, tab: Any, google_id: str, credentials: Any
) -> Iterator[list[str]]:
    """Data rows (row 2 on), ROWS_PER_REQUEST at a time; the API omits trailing blanks."""
    last = tab.row_count
    for start in range(2, last + 1, ROWS_PER_REQUEST):
        end = min(start + ROWS_PER_REQUEST - 1, last)
        with _google_errors(google_id, credentials):
            values = _get_values(spreadsheet, f"{_a1(tab.title)}!{start}:{end}")
        yield from values
        if end < last:  # blank rows before the next chunk keep the row numbers right
            yield from ([] for _ in range(end - start + 1 - len(values)))


def _get_values(spreadsheet: Any, range_: str) -> list[list[str]]:
    response = spreadsheet.values_get(range_, params={"valueRenderOption": "FORMATTED_VALUE"})
    return [[str(cell) for cell in row] for row in response.get("values", [])]


def _pick_worksheet(tabs: list[Any], title: str | None, gid: int | None, book: str) -> Any:
    if not tabs:
        raise SourceError(f"The Google Sheet “{book}” has no worksheets.")
    if title:
        for tab in tabs:
            if tab.title == title:
                return tab
        names = ", ".join(f"“{tab.title}”" for tab in tabs)
        raise SourceError(
            f"The Google Sheet “{book}” has no worksheet named “{title}”; it has: {names}."
        )
    if gid is not None:
        for tab in tabs:
            if tab.id == gid:
                return tab
    return tabs[0]


def _a1(title: str) -> str:
    """A worksheet title quoted for A1 notation: 'It''s here'."""
    return "'" + title.replace("'", "''") + "'"


def _credentials() -> service_account.Credentials:
    configured = settings.CONVEYOR_GOOGLE_CREDENTIALS.strip()
    if not configured:
        raise SourceError(
            "Google Sheets is not set up on this server: an administrator must set "
            "CONVEYOR_GOOGLE_CREDENTIALS to a service-account key (a path or the JSON)."
        )
    text = configured
    if not configured.startswith("{"):
        try:
            text = Path(configured).read_text()
        except OSError as exc:
            raise SourceError(
                "Google Sheets is not set up correctly: the service-account key file "
                f"named in CONVEYOR_GOOGLE_CREDENTIALS cannot be read ({exc.strerror})."
            ) from None
    try:
        info = json.loads(text)
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SourceError(
            "Google Sheets is not set up correctly: CONVEYOR_GOOGLE_CREDENTIALS is not a "
            f"valid service-account key ({exc})."
        ) from None


def _client(credentials: service_account.Credentials) -> gspread.Client:
    """A gspread client whose `http_client` is a ConfiguredHTTPClient; close() that."""
    client = gspread.Client(auth=credentials, http_client=ConfiguredHTTPClient)
    client.set_timeout(TIMEOUT_SECONDS)
    return client


@contextlib.contextmanager
def _google_errors(google_id: str, credentials: Any) -> Iterator[None]:
    """Turn gspread, google-auth and network errors into messages a user can act on."""
    account = credentials.service_account_email
    try:
        yield
    except SpreadsheetNotFound:
        raise SourceError(_not_found(google_id, account)) from None
    except PermissionError:
        raise SourceError(_forbidden(account)) from None
    except APIError as exc:
        raise SourceError(_api_error(exc, google_id, account)) from None
    except GoogleAuthError as exc:
        detail = exc.args[0] if exc.args else exc
        raise SourceError(
            f"Google refused this server's service-account key ({account}): {detail}"
        ) from None
    except requests.RequestException as exc:
        raise SourceError(f"Could not reach Google Sheets ({type(exc).__name__}).") from None


def _api_error(exc: APIError, google_id: str, account: str) -> str:
    status = exc.response.status_code
    if status == 403:
        return _forbidden(account)
    if status == 404:
        return _not_found(google_id, account)
    if status == 429:
        return "Google Sheets is rate-limiting this server; try again in a minute."
    return f"Google Sheets answered with an error ({status}): {exc.error.get('message', '')}"


def _forbidden(account: str) -> str:
    return (
        f"This server's Google account ({account}) may not open that sheet. Share the "
        "sheet with that address (Viewer to import; Editor to write results back)."
    )


def _not_found(google_id: str, account: str) -> str:
    return (
        f"No Google Sheet with id {google_id} was found. Check the link, and that the "
        f"sheet is shared with {account}."
    )


def _clip(text: str, chars: int = 60) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
