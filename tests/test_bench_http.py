"""The benchmarks' lean HTTP client (`bench.http`): a keep-alive connection the server
closes as a request goes out is retried once for an idempotent request, never for a write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.http import LeanHttp

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def one_reply_per_connection() -> AsyncIterator[str]:
    """A server that answers the first request of each connection and closes the
    connection, unanswered, on the second (its keep-alive timeout striking just then)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_an_idempotent_request_on_a_closing_connection_is_sent_again(
    one_reply_per_connection: str,
) -> None:
    async with LeanHttp(one_reply_per_connection) as http:
        assert (await http.get("/a")).status == 200
        assert (await http.get("/b")).status == 200  # the reused connection closed: retried


async def test_a_write_on_a_closing_connection_is_not_sent_twice(
    one_reply_per_connection: str,
) -> None:
    async with LeanHttp(one_reply_per_connection) as http:
        assert (await http.get("/a")).status == 200
        with pytest.raises(ConnectionError):
            await http.request("POST", "/write", body=b"{}")
