"""A lean HTTP/1.1 client for the benchmarks: raw asyncio protocol, keep-alive, a pool of
connections (one per concurrent caller), no parsing beyond the status line, the
Content-Length (or chunked) body and nothing else.

httpx with keep-alive costs more CPU per request than the plain baseline it is compared
with (issue 17); this client costs some tens of microseconds, and the benchmarks report
its own CPU per request (`bench.cpu`) so a reader can check it stays < 15 % of the
measured request's.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods a client may send again when a reused connection closed before any reply."""


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            response = self._parse()
            if response is not None:
                self.waiter.set_result(response)

    def _parse(self) -> Response | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length, chunked = 0, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        start = end + 4
        if not chunked:
            if len(buffer) < start + length:
                return None
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            return Response(status, body)
        parts: list[bytes] = []
        at = start
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            if size == 0:
                if len(buffer) < line_end + 4:
                    return None
                del buffer[: line_end + 4]
                return Response(status, b"".join(parts))
            if len(buffer) < line_end + 2 + size + 2:
                return None
            parts.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
            at = line_end + 2 + size + 2

    async def send(self, request: bytes, timeout_s: float) -> Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout_s, self._expire, waiter)
        self.transport.write(request)
        try:
            response: Response = await waiter
            return response
        finally:
            timer.cancel()
            self.waiter = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @staticmethod
    def _expire(waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError("no response in time"))


class LeanHttp:
    """Keep-alive connections to one `http://host:port`, reused across requests."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        assert parts.scheme == "http" and parts.hostname and parts.port
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port
        self.authority = f"{self.host}:{self.port}".encode()
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []

    async def _acquire(self, reuse: bool = True) -> tuple[_Connection, bool]:
        """A connection, and whether it was idle in the pool (the server may be closing it)."""
        while reuse and self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn, False

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        """`target` is the path and query (`/api/v1/...?a=b`)."""
        lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + self.authority]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        request = b"\r\n".join(lines) + b"\r\n\r\n" + body
        conn, reused = await self._acquire()
        try:
            response = await conn.send(request, self.timeout_s)
        except ConnectionError:
            conn.close()
            if not (reused and not conn.buffer and method in IDEMPOTENT):
                raise
            # The server closed an idle keep-alive connection as the request went out
            # (uvicorn's keep-alive timeout): sent again on a new one, as clients do for
            # an idempotent request that got no byte of a response (RFC 9112, 9.3.1).
            conn, _ = await self._acquire(reuse=False)
            try:
                response = await conn.send(request, self.timeout_s)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        if not conn.closed:
            self._idle.append(conn)
        return response

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", target, headers)

    async def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
        await asyncio.sleep(0)

    async def __aenter__(self) -> LeanHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
