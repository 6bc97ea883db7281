"""Log lines: plain text or, with LOG_FORMAT=json, one JSON object per line, for every
logger and daphne's access log too, with the values of query strings masked.

A query string may carry a token or a key (`?api_key=...`), and Django's request logs
attach the request itself (whose repr is the full URL), so both formatters mask every
query value before a line is written: `/jobs/?api_key=***&page=***`. daphne writes its
access log straight to stdout, in its own format, unless `route_daphne_access_log()`
(called by config/asgi.py under daphne) sends each entry to the `daphne.access` logger
instead: then it is formatted, masked and filtered like every other line.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

MASK = "***"
# `?name=value` or `&name=value`, up to the next separator (quotes and spaces end a URL
# inside a message or a repr).
QUERY_VALUE = re.compile(r"([?&][^=&#\s'\"<>]*=)[^&#\s'\"<>]*")

access_log = logging.getLogger("daphne.access")


def mask_query(text: str) -> str:
    """`text` with the value of every `?name=value` / `&name=value` replaced by ***."""
    return QUERY_VALUE.sub(lambda m: m[1] + MASK, text)


def _request_line(request: Any) -> str:
    """What a log line says of a request: its method and path, query values masked."""
    method = getattr(request, "method", "") or ""
    try:
        path = request.get_full_path()
    except Exception:  # noqa: BLE001 - a log line must not fail on an odd request
        path = getattr(request, "path", "") or ""
    return mask_query(f"{method} {path}".strip())


class TextFormatter(logging.Formatter):
    """The plain-text line, query values masked (message and traceback alike)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_query(super().format(record))


class MaskedJsonFormatter(JsonFormatter):
    """One JSON object per line; a `request` extra becomes its method and masked path
    (not the object's repr), and every string value has its query values masked."""

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        for key, value in list(log_record.items()):
            if key == "request" and not isinstance(value, str):
                log_record[key] = _request_line(value)
            elif isinstance(value, str):
                log_record[key] = mask_query(value)


def log_access(protocol: str, action: str, details: dict[str, Any]) -> None:
    """One daphne action (the HTTP requests and websocket steps its own access log
    writes) as a `daphne.access` INFO record, path masked."""
    path = mask_query(str(details.get("path") or ""))
    if protocol == "http" and action == "complete":
        method, status, size = details.get("method"), details.get("status"), details.get("size")
        message = f'{details.get("client") or "-"} "{method} {path}" {status} {size}'
        fields = {"method": method, "status": status, "size": size}
        fields["duration_ms"] = round((details.get("time_taken") or 0) * 1000, 1)
    elif protocol == "websocket" and action in WEBSOCKET_ACTIONS:
        message = f'{details.get("client") or "-"} "{WEBSOCKET_ACTIONS[action]} {path}"'
        fields = {"method": WEBSOCKET_ACTIONS[action]}
    else:
        return
    extra = {"client": details.get("client"), "path": path, **fields}
    access_log.info(message, extra=extra)


WEBSOCKET_ACTIONS = {
    "connecting": "WSCONNECTING",
    "rejected": "WSREJECT",
    "connected": "WSCONNECT",
    "disconnected": "WSDISCONNECT",
}


def route_daphne_access_log() -> None:
    """Send daphne's access log (written to stdout by default) through `log_access`.
    An access log the operator pointed at a file (`--access-log FILE`) stays there, in
    daphne's format, with query values masked."""
    from daphne.access import AccessLogGenerator

    if getattr(AccessLogGenerator, "_conveyor_routed", False):
        return
    original_write = AccessLogGenerator.write_entry

    def __call__(self: Any, protocol: str, action: str, details: dict[str, Any]) -> None:
        if self.stream is sys.stdout:
            log_access(protocol, action, details)
            return
        original_call(self, protocol, action, details)

    def write_entry(self: Any, host: Any, date: Any, request: str, *args: Any, **kw: Any) -> None:
        original_write(self, host, date, mask_query(request), *args, **kw)

    original_call = AccessLogGenerator.__call__
    AccessLogGenerator.__call__ = __call__
    AccessLogGenerator.write_entry = write_entry
    AccessLogGenerator._conveyor_routed = True
