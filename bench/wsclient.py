"""A minimal websocket client (RFC 6455 over asyncio streams) and a recorder that runs
many of them in a background thread, timing each frame on arrival.

The project pins no websocket client library, and the live benchmarks need only text
frames from a server, a handshake with a cookie and an Origin, and the clock reading
at arrival: this is about eighty lines. Frames are parsed on arrival (`parse(text)`),
so 200 clients keep only small records, not every HTML fragment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class HandshakeError(ConnectionError):
    pass


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: dict[str, str]) -> WebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if " 101 " not in head.split("\r\n", 1)[0] or accept not in head:
            writer.close()
            raise HandshakeError(head.split("\r\n", 1)[0])
        return cls(reader, writer)

    async def recv(self) -> str | None:
        """The next text message, or None when the server closes the connection."""
        parts: list[bytes] = []
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            mask = await self.reader.readexactly(4) if second & 0x80 else b""
            payload = await self.reader.readexactly(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == CLOSE:
                return None
            if opcode == PING:
                await self._send(PONG, payload)
                continue
            if opcode in (TEXT, BINARY, CONTINUATION):
                parts.append(payload)
                if first & 0x80:  # FIN
                    return b"".join(parts).decode(errors="replace")

    async def send(self, text: str) -> None:
        await self._send(TEXT, text.encode())

    async def _send(self, opcode: int, payload: bytes) -> None:
        """Client frames are masked (RFC 6455 5.3)."""
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)
        await self.writer.drain()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(CLOSE, struct.pack("!H", 1000))
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=2)


class Recorder:
    """`clients` websocket connections to one URL, in a thread with its own event loop.

    Every frame for which `parse(text)` returns something is recorded as
    `(client index, time.time() at arrival, parsed)`. `start()` returns once every
    client is connected and has received `ready_frames` frames (e.g. the badges the
    server sends on connect); `stop()` closes them all.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        headers: dict[str, str],
        parse: Callable[[str], Any],
        *,
        clients: int = 1,
        ready_frames: int = 1,
        connect_at_once: int = 20,
    ) -> None:
        self.host, self.port, self.path, self.headers = host, port, path, headers
        self.parse = parse
        self.clients = clients
        self.ready_frames = ready_frames
        self.connect_at_once = connect_at_once
        self.records: list[tuple[int, float, Any]] = []
        self.closed_early = 0
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="ws-recorder", daemon=True)

    def start(self, timeout: float = 60.0) -> Recorder:
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            self.stop()
            raise RuntimeError(f"websocket clients did not connect: {self.error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gate = asyncio.Semaphore(self.connect_at_once)
        ready = [asyncio.Event() for _ in range(self.clients)]
        sockets: list[WebSocket] = []
        tasks = [
            asyncio.create_task(self._client(i, gate, ready[i], sockets))
            for i in range(self.clients)
        ]
        waiting = asyncio.gather(*(event.wait() for event in ready))
        await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=120)
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            self.error = failed[0].exception()
        elif not all(event.is_set() for event in ready):
            self.error = TimeoutError(f"{sum(not e.is_set() for e in ready)} client(s) not ready")
        self._ready.set()
        if self.error is None:
            await self._stop.wait()
        waiting.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    async def _client(
        self, index: int, gate: asyncio.Semaphore, ready: asyncio.Event, sockets: list
    ) -> None:
        async with gate:
            ws = await WebSocket.connect(self.host, self.port, self.path, self.headers)
            sockets.append(ws)
            seen = 0
            while seen < self.ready_frames:
                text = await ws.recv()
                if text is None:
                    raise ConnectionError(f"client {index} closed during the handshake")
                seen += 1
        ready.set()
        while True:
            text = await ws.recv()
            arrived = time.time()
            if text is None:
                self.closed_early += 1
                return
            parsed = self.parse(text)
            if parsed is not None:
                self.records.append((index, arrived, parsed))
