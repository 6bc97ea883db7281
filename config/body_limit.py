"""Request bodies bounded before Django reads them.

Django's ASGI handler spools a whole body before any view runs, and daphne (Twisted)
buffers a whole body before the application even starts, then queues all of it in memory
at once: one anonymous 60 MB POST grew daphne by ~1.2 GB. So the limit is enforced twice,
with one rule (`limit_for`): uploads get CONVEYOR_MAX_UPLOAD_BYTES plus a multipart
allowance, every other request CONVEYOR_MAX_REQUEST_BYTES.

- `BodyLimitMiddleware` (ASGI, any server): an honest Content-Length over the limit is a
  413 without running the app; a streamed body is cut where it crosses the limit: the
  app sees the client disconnect (never a truncated body as complete), the client a 413.
- `guard_daphne()`: daphne's request refuses the same bodies while they arrive, before
  buffering them: a 413 as soon as the headers are in, the rest of the body discarded.
  A large accepted body stays in daphne's temporary file: the ASGI layer reads it from
  there as the app asks (`SpooledBody`), instead of daphne queueing all of it in memory.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

UPLOAD_PATHS = ("/sheets/upload/",)
MULTIPART_ALLOWANCE = 64 * 1024  # boundaries, part headers and the form's other fields
# How long a refused connection may go on sending (discarded) before it is closed: long
# enough for the client to finish writing and read the 413 instead of a reset.
LINGER_SECONDS = 10.0
# Bodies larger than this are handed from daphne's file to the app chunk by chunk.
HAND_OVER_BYTES = 256 * 1024
READ_BYTES = 64 * 1024


def limit_for(path: str) -> int:
    """The largest body, in bytes, a request to `path` may carry."""
    if path in UPLOAD_PATHS:
        return settings.CONVEYOR_MAX_UPLOAD_BYTES + MULTIPART_ALLOWANCE
    return settings.CONVEYOR_MAX_REQUEST_BYTES


def too_large_text(limit: int) -> bytes:
    return f"Request body too large: at most {limit:,} bytes here.\n".encode()


# --- the ASGI layer -----------------------------------------------------------------


class BodyLimitMiddleware:
    """Wraps the HTTP application; see the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _send_too_large(send, limit)
            return
        body = _BoundedBody(receive, send, limit)
        try:
            await self.app(scope, body.receive, body.send)
        finally:
            body.close()
        if body.exceeded and not body.response_started:
            await _send_too_large(send, limit)


class SpooledBody(bytes):
    """An empty body chunk carrying the file daphne spooled the whole body to."""

    file: Any


class _BoundedBody:
    """Counts the body as the app reads it; past the limit the app hears a disconnect."""

    def __init__(self, receive: Any, send: Any, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.exceeded = False
        self.response_started = False
        self.spooled: Any = None

    async def receive(self) -> dict:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._next()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def _next(self) -> dict:
        """The server's next message; a spooled body is read from its file, 64 KB at a
        time, and closed at its end (after which the server speaks again)."""
        if self.spooled is None or self.spooled.closed:
            message = await self._receive()
            body = message.get("body")
            if not isinstance(body, SpooledBody):
                return message
            self.spooled = body.file
        chunk = self.spooled.read(READ_BYTES)
        more = len(chunk) == READ_BYTES
        if not more:
            self.spooled.close()
        return {"type": "http.request", "body": chunk, "more_body": more}

    def close(self) -> None:
        if self.spooled is not None:
            self.spooled.close()

    async def send(self, message: dict) -> None:
        if self.exceeded and not self.response_started:
            return  # the 413 is ours to send
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


def _declared_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


async def _send_too_large(send: Any, limit: int) -> None:
    body = too_large_text(limit)
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- daphne -------------------------------------------------------------------------


def guard_daphne() -> None:
    """Make daphne build bounded requests (its factory looks the class up per connection)."""
    from daphne import http_protocol

    if not getattr(http_protocol.WebRequest, "bounded", False):
        http_protocol.WebRequest = _bounded_request_class(http_protocol.WebRequest)


def _bounded_request_class(base: type) -> type:
    class BoundedWebRequest(base):
        """Refuses a body over the limit as it arrives, so nothing of it is buffered."""

        bounded = True
        refused = False
        body_limit = 0
        body_received = 0
        linger = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Twisted would parse a form or multipart body into `args` (in memory, in
            # several copies); daphne never reads them, Django parses the body itself.
            self._parsePOSTFormSubmission = False

        def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
            self.body_limit = limit_for(_request_path(self.channel))
            if length is not None and length > self.body_limit:
                self._refuse(length)
            super().gotLength(0 if self.refused else length)

        def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
            if self.refused:
                return
            self.body_received += len(data)
            if self.body_received > self.body_limit:
                self._refuse(None)
                return
            super().handleContentChunk(data)

        def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
            if self.refused:
                self.channel.loseConnection()  # the 413 is sent, the body drained
                return
            if self.content.seek(0, 2) > HAND_OVER_BYTES:
                self.content = _HandOver(self.content)
            super().requestReceived(command, path, version)

        def _refuse(self, declared: int | None) -> None:
            """Answer 413 now; discard the rest of the body, then (or after a while) close."""
            from twisted.internet import reactor

            self.refused = True
            if getattr(self, "content", None) is not None:
                self.content.close()
            # No "100 Continue" after our answer (Twisted sends it after gotLength).
            self.requestHeaders.removeHeader(b"Expect")
            body = too_large_text(self.body_limit)
            head = (
                "HTTP/1.1 413 Content Too Large\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self.channel.transport.write(head.encode() + body)
            self.linger = reactor.callLater(LINGER_SECONDS, self.channel.loseConnection)
            size = f"{declared:,}-byte" if declared is not None else "streamed"
            logger.warning(
                "Refused a %s request body to %s (limit %s bytes)",
                size,
                _request_path(self.channel),
                f"{self.body_limit:,}",
            )

        def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's name
            if self.linger is not None and self.linger.active():
                self.linger.cancel()
            super().connectionLost(reason)

    return BoundedWebRequest


class _HandOver:
    """Stands in for daphne's body file: daphne's first read gets one `SpooledBody`
    holding the file, so the ASGI layer, not daphne's queue, reads the bytes."""

    closed = False

    def __init__(self, file: Any) -> None:
        self.file = file
        self.size = file.tell()
        self.handed = False

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        if self.handed:
            return b""
        self.handed = True
        self.file.seek(0)
        body = SpooledBody()
        body.file = self.file
        return body

    def close(self) -> None:
        """Twisted closes the request's content when the connection ends; the ASGI
        layer closes the file once it has read it (or the app has ended)."""
        self.closed = True


def _request_path(channel: Any) -> str:
    """The path of the request whose headers the channel just read (Twisted keeps the
    request line on the channel until the body is in)."""
    target = getattr(channel, "_path", b"") or b""
    return unquote(urlsplit(target.decode("latin-1")).path)
