"""A fake Google Sheets API (v4) and OAuth token endpoint: a real HTTP server on 127.0.0.1.

It implements what gspread and google-auth call for Conveyor: the service-account
token exchange (the JWT assertion's signature is checked), google-auth's
allowed-locations lookup, spreadsheet metadata,
values get, values update / batchUpdate and appendDimension; it enforces grid limits
like Google does, stores what was written so tests can assert it, and can answer
403 or 404. The `google_sheets` fixture starts it and points the settings at it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt
from openpyxl.utils import column_index_from_string

from tests.fakes.server import FakeHandler, FakeServer

SERVICE_ACCOUNT_EMAIL = "conveyor-test@fake-project.iam.gserviceaccount.com"
# google-auth signs for Google's token endpoint whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_RANGE = re.compile(r"^([A-Z]*)(\d*)(?::([A-Z]*)(\d*))?$")


@cache
def _private_key() -> rsa.RSAPrivateKey:
    """One RSA key per test session: generating one takes ~100 ms."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeWorksheet:
    title: str
    sheet_id: int
    rows: list[list[str]] = field(default_factory=list)
    row_count: int = 1000
    column_count: int = 26

    def properties(self, index: int) -> dict[str, Any]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.column_count},
        }

    def read(self, top: int, left: int, bottom: int, right: int) -> list[list[str]]:
        """Cells of the 0-based inclusive box, trailing blanks trimmed as Google does."""
        out = []
        for r in range(top, min(bottom, len(self.rows) - 1) + 1):
            row = self.rows[r][left : right + 1]
            while row and row[-1] == "":
                row.pop()
            out.append(row)
        while out and not out[-1]:
            out.pop()
        return out

    def write(self, top: int, left: int, values: list[list[str]]) -> int:
        for r, row in enumerate(values):
            for c, value in enumerate(row):
                self._set(top + r, left + c, value)
        return sum(len(row) for row in values)

    def _set(self, r: int, c: int, value: Any) -> None:
        while len(self.rows) <= r:
            self.rows.append([])
        row = self.rows[r]
        while len(row) <= c:
            row.append("")
        row[c] = "" if value is None else str(value)


@dataclass
class FakeSpreadsheet:
    spreadsheet_id: str
    title: str
    worksheets: list[FakeWorksheet]

    def worksheet(self, title: str) -> FakeWorksheet | None:
        return next((ws for ws in self.worksheets if ws.title == title), None)


class ApiError(Exception):
    def __init__(self, code: int, message: str, status: str) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class FakeGoogleSheets(FakeServer):
    """The server and its state. Add spreadsheets, then assert on `requests` and `values`."""

    server_class = ThreadingHTTPServer
    # A short poll interval makes shutdown() return in milliseconds, not 0.5 s.
    poll_interval = 0.02
    join_timeout = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.spreadsheets: dict[str, FakeSpreadsheet] = {}
        self.forbidden: set[str] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path) of API calls
        self.tokens_issued = 0
        self.access_token = secrets.token_urlsafe(24)
        self._lock = threading.Lock()

    service_account_email = SERVICE_ACCOUNT_EMAIL

    @property
    def url(self) -> str:
        return self.origin

    # --- set-up and inspection, for tests -------------------------------------

    def add_spreadsheet(
        self, spreadsheet_id: str, title: str, worksheets: dict[str, list[list[str]]], **grid: int
    ) -> FakeSpreadsheet:
        """`grid` may set row_count / column_count of every worksheet."""
        sheets = [
            FakeWorksheet(title=name, sheet_id=index * 1000, rows=[list(r) for r in rows], **grid)
            for index, (name, rows) in enumerate(worksheets.items())
        ]
        spreadsheet = FakeSpreadsheet(spreadsheet_id, title, sheets)
        self.spreadsheets[spreadsheet_id] = spreadsheet
        return spreadsheet

    def values(self, spreadsheet_id: str, worksheet: str) -> list[list[str]]:
        ws = self.spreadsheets[spreadsheet_id].worksheet(worksheet)
        assert ws is not None
        return ws.read(0, 0, len(ws.rows), 10_000)

    def calls(self, method: str, suffix: str) -> int:
        """How many API requests had this method and a path ending with `suffix`."""
        return sum(1 for m, path in self.requests if m == method and path.endswith(suffix))

    def service_account_info(self) -> dict[str, str]:
        pem = _private_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "fake-key-1",
            "private_key": pem.decode(),
            "client_email": SERVICE_ACCOUNT_EMAIL,
            "client_id": "1234567890",
            "token_uri": f"{self.url}/token",
        }

    # --- request handling (called from the server's threads) --------------------

    def issue_token(self, form: dict[str, list[str]]) -> dict[str, Any]:
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            raise ApiError(400, "unsupported grant_type", "invalid_grant")
        public_pem = (
            _private_key()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        try:
            claims = jwt.decode(
                form["assertion"][0], certs=public_pem, audience=GOOGLE_TOKEN_AUDIENCE
            )
        except (ValueError, KeyError) as exc:
            raise ApiError(400, f"invalid assertion: {exc}", "invalid_grant") from None
        if claims.get("iss") != SERVICE_ACCOUNT_EMAIL:
            raise ApiError(400, "unknown service account", "invalid_grant")
        with self._lock:
            self.tokens_issued += 1
        return {"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"}

    def api(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        match = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(.*)", path)
        if not match:
            raise ApiError(404, f"Unknown path {path}", "NOT_FOUND")
        spreadsheet_id, rest = match.groups()
        if spreadsheet_id in self.forbidden:
            raise ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")
        spreadsheet = self.spreadsheets.get(spreadsheet_id)
        if spreadsheet is None:
            raise ApiError(404, "Requested entity was not found.", "NOT_FOUND")
        with self._lock:
            return self._route(spreadsheet, method, unquote(rest), body)

    def _route(self, spreadsheet: FakeSpreadsheet, method: str, rest: str, body: Any) -> Any:
        if method == "GET" and rest == "":
            return self._metadata(spreadsheet)
        if method == "GET" and rest.startswith("/values/"):
            return self._values_get(spreadsheet, rest.removeprefix("/values/"))
        if method == "PUT" and rest.startswith("/values/"):
            return self._values_update(spreadsheet, rest.removeprefix("/values/"), body)
        if method == "POST" and rest == "/values:batchUpdate":
            return self._values_batch_update(spreadsheet, body)
        if method == "POST" and rest == ":batchUpdate":
            return self._batch_update(spreadsheet, body)
        raise ApiError(404, f"Not implemented by the fake: {method} {rest}", "NOT_FOUND")

    def _metadata(self, spreadsheet: FakeSpreadsheet) -> dict[str, Any]:
        return {
            "spreadsheetId": spreadsheet.spreadsheet_id,
            "properties": {"title": spreadsheet.title, "locale": "en_US", "timeZone": "UTC"},
            "sheets": [
                {"properties": ws.properties(index)}
                for index, ws in enumerate(spreadsheet.worksheets)
            ],
        }

    def _values_get(self, spreadsheet: FakeSpreadsheet, a1: str) -> dict[str, Any]:
        ws, box = self._resolve(spreadsheet, a1)
        return {"range": a1, "majorDimension": "ROWS", "values": ws.read(*box)}

    def _values_update(self, spreadsheet: FakeSpreadsheet, a1: str, body: Any) -> dict[str, Any]:
        return self._write(spreadsheet, a1, body.get("values", []), body.get("majorDimension"))

    def _values_batch_update(self, spreadsheet: FakeSpreadsheet, body: Any) -> dict[str, Any]:
        if body.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            raise ApiError(400, "valueInputOption is required", "INVALID_ARGUMENT")
        responses = [
            self._write(spreadsheet, item["range"], item["values"], item.get("majorDimension"))
            for item in body.get("data", [])
        ]
        return {
            "spreadsheetId": spreadsheet.spreadsheet_id,
            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
            "responses": responses,
        }

    def _write(
        self, spreadsheet: FakeSpreadsheet, a1: str, values: list[list[Any]], major: str | None
    ) -> dict[str, Any]:
        ws, (top, left, _, _) = self._resolve(spreadsheet, a1)
        if major == "COLUMNS":
            width = max((len(column) for column in values), default=0)
            values = [[col[i] if i < len(col) else "" for col in values] for i in range(width)]
        bottom = top + len(values) - 1
        right = left + max((len(row) for row in values), default=1) - 1
        self._check_grid(ws, bottom, right)
        cells = ws.write(top, left, values)
        return {"updatedRange": a1, "updatedCells": cells}

    def _batch_update(self, spreadsheet: FakeSpreadsheet, body: Any) -> dict[str, Any]:
        for request in body.get("requests", []):
            grow = request.get("appendDimension")
            if grow is None:
                raise ApiError(400, f"Not implemented by the fake: {request}", "INVALID_ARGUMENT")
            ws = next(w for w in spreadsheet.worksheets if w.sheet_id == grow["sheetId"])
            if grow["dimension"] == "ROWS":
                ws.row_count += grow["length"]
            else:
                ws.column_count += grow["length"]
        return {"spreadsheetId": spreadsheet.spreadsheet_id, "replies": [{}]}

    def _resolve(
        self, spreadsheet: FakeSpreadsheet, a1: str
    ) -> tuple[FakeWorksheet, tuple[int, int, int, int]]:
        """Worksheet and 0-based inclusive (top, left, bottom, right) of an A1 range."""
        title, _, cells = a1.rpartition("!") if "!" in a1 else (a1, "", "")
        if title.startswith("'") and title.endswith("'"):
            title = title[1:-1].replace("''", "'")
        ws = spreadsheet.worksheet(title)
        match = _RANGE.match(cells)
        if ws is None or match is None:
            raise ApiError(400, f"Unable to parse range: {a1}", "INVALID_ARGUMENT")
        col1, row1, col2, row2 = match.groups()
        if match.group(0) and ":" not in cells:  # a single cell
            col2, row2 = col1, row1
        top = int(row1) - 1 if row1 else 0
        left = column_index_from_string(col1) - 1 if col1 else 0
        bottom = int(row2) - 1 if row2 else ws.row_count - 1
        right = column_index_from_string(col2) - 1 if col2 else ws.column_count - 1
        self._check_grid(ws, bottom, right)
        return ws, (top, left, bottom, right)

    @staticmethod
    def _check_grid(ws: FakeWorksheet, bottom: int, right: int) -> None:
        if bottom >= ws.row_count or right >= ws.column_count:
            raise ApiError(
                400,
                f"Range exceeds grid limits. Max rows: {ws.row_count}, "
                f"max columns: {ws.column_count}",
                "INVALID_ARGUMENT",
            )


class _Handler(FakeHandler):
    fake: FakeGoogleSheets

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if parts.path == "/token" and method == "POST":
                self._reply(200, fake.issue_token(parse_qs(raw.decode())))
                return
            if parts.path.endswith("/allowedLocations") and method == "GET":
                # google-auth's background regional-access-boundary lookup: no limits.
                self._reply(200, {"locations": [], "encodedLocations": "0x0"})
                return
            if self.headers.get("Authorization") != f"Bearer {fake.access_token}":
                raise ApiError(401, "Request is missing valid authentication", "UNAUTHENTICATED")
            fake.requests.append((method, parts.path))
            body = json.loads(raw) if raw else {}
            self._reply(200, fake.api(method, parts.path, parse_qs(parts.query), body))
        except ApiError as exc:
            error = {"code": exc.code, "message": exc.message, "status": exc.status}
            self._reply(exc.code, {"error": error})

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


FakeGoogleSheets.handler = _Handler


@pytest.fixture
def google_sheets(settings) -> Iterator[FakeGoogleSheets]:
    """A running fake Google Sheets API, with Conveyor's settings pointing at it."""
    with FakeGoogleSheets() as fake:
        settings.CONVEYOR_GOOGLE_API_URL = fake.url
        settings.CONVEYOR_GOOGLE_CREDENTIALS = json.dumps(fake.service_account_info())
        yield fake
