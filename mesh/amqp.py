"""The robust connection every process holds, to one node of a RabbitMQ cluster at a time.

aio-pika's `connect_robust` takes one URL and, after losing it, retries that URL only: a
client of a killed node would wait for that very node to come back. `ClusterConnection`
is aio-pika's `RobustConnection` (channels, queues, bindings and consumers restored
after a reconnect, exactly as before) whose every connection attempt goes to the next
URL of the list in turn: the first attempt to the first URL, and after a loss (or a
refused attempt) the next node, round robin. aio-pika reads `self.url` once per attempt
(`Connection.connect`), which is where the turn is taken; the log line shows the URL
without its password (`__str__`).

A node cut off by the network (a partition, a dead host) sends no close and no reset: its
connections just go silent, and a connect to it is never answered. So every connection
asks for a short heartbeat (`HEARTBEAT_S`, unless its URL names one) and every attempt has
a bound (`CONNECT_TIMEOUT_S`); with aiormq's defaults a silent connection was declared
dead only after 183 s, and an attempt at a black-holed node waited for the kernel's SYN
retries (about two minutes) before the next node was tried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL

T = TypeVar("T")


class ConnectionLost(aiormq.exceptions.AMQPConnectionError):
    """The connection went down while a publish waited for its confirm (see `confirmed`)."""


BUS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.ChannelInvalidStateError,  # a RuntimeError: "channel closed"
    ConnectionError,
)
"""What a publish or call raises while the broker (or this client's node) is gone."""

CONNECT_FAILED: tuple[type[BaseException], ...] = (TimeoutError, *BUS_UNAVAILABLE)


async def confirmed(publish: Awaitable[T]) -> T:
    """`await publish` (a publish with confirms), with a lost connection raised as
    `ConnectionLost` (one of `BUS_UNAVAILABLE`) rather than as a `CancelledError`.

    When aiormq gives a connection up (its heartbeat found it silent: a node cut off), it
    cancels its reader and with it every confirm still awaited, so the publisher sees a
    CancelledError although nobody cancelled it. Left as it is, that ended an RPC in a 500
    and killed the outbox relay's task (`except Exception` does not catch it): 16 audit
    events stayed in an outbox nobody relayed any more. A cancellation of the caller's own
    task (a shutdown, an `asyncio.timeout`) still propagates.
    """
    try:
        return await publish
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise ConnectionLost("the connection was lost before the broker confirmed") from None


HEARTBEAT_S = 5
"""The AMQP heartbeat every connection negotiates (a URL's own `?heartbeat=` wins). aiormq
declares a connection dead after 3 x (heartbeat + 1) s without a frame: 18 s here, 183 s at
its default of 60 (measured with a node cut off: the clients of that node waited three
minutes before moving on). RabbitMQ advises against less than 5 s (false alarms on a busy
host)."""

CONNECT_TIMEOUT_S = 5.0
"""The bound of one connection attempt, TCP connect and AMQP handshake (a robust
connection keeps it for every reconnection). A node that answers does so in milliseconds;
one behind a partition never does, and without a bound the kernel gives up only after its
SYN retries (about 130 s), all that time not trying the next node of the list."""

RECONNECT_INTERVAL_S = 1.0
"""Pause between attempts (aio-pika's default is 5 s; with a list, the next attempt is
another node, so there is no reason to wait long)."""


def with_heartbeat(url: str | URL) -> URL:
    """`url` asking for `HEARTBEAT_S`, unless it already names a heartbeat."""
    parsed = URL(url)
    if "heartbeat" in parsed.query:
        return parsed
    return parsed.update_query(heartbeat=str(HEARTBEAT_S))


class ClusterConnection(RobustConnection):
    """A robust connection that tries the nodes of a cluster in turn (see the module)."""

    def __init__(self, url: URL, *, urls: Sequence[str], **kwargs: Any) -> None:
        self._urls = [with_heartbeat(u) for u in urls] or [with_heartbeat(url)]
        self._turn = 0
        super().__init__(self._urls[0], **kwargs)
        self._turn = 0  # `__init__` read the URL once (its query options)

    @property
    def url(self) -> URL:
        """The URL of this attempt; the next read (the next attempt) gets the next node."""
        url = self._urls[self._turn % len(self._urls)]
        self._current = url
        self._turn += 1
        return url

    @url.setter
    def url(self, value: URL) -> None:
        # aio-pika sets it in `__init__` (and `update_secret`): keep the list's node order,
        # take the new URL's credentials for every node.
        self._urls = [
            u.with_user(value.user).with_password(value.password) for u in self._urls
        ] or [value]
        self._current = value

    @property
    def current_url(self) -> URL:
        """The node this connection is (or was last) attached to."""
        return getattr(self, "_current", self._urls[0])

    def __str__(self) -> str:
        url = self.current_url
        return str(url.with_password("******") if url.password else url)


async def connect(
    urls: Sequence[str],
    *,
    name: str,
    timeout: float = CONNECT_TIMEOUT_S,
    reconnect_interval: float = RECONNECT_INTERVAL_S,
) -> AbstractRobustConnection:
    """A robust connection to the first node of `urls` that answers (tried in order).

    The first connection must succeed within the list (each node refusing, or not
    answering within `timeout`, counts as one attempt), else the last error is raised;
    later losses reconnect in the background, each attempt bounded by `timeout` too.
    """
    if not urls:
        raise ValueError("no broker URL to connect to")
    last: BaseException | None = None
    for _ in urls:
        connection = ClusterConnection(
            URL(urls[0]),
            urls=urls,
            client_properties={"connection_name": name},
            reconnect_interval=reconnect_interval,
        )
        try:
            await connection.connect(timeout=timeout)
            return connection
        except CONNECT_FAILED as exc:
            last = exc
            await connection.close()
            urls = [*urls[1:], urls[0]]
    assert last is not None
    raise last


async def connect_once(urls: Sequence[str], *, timeout: float) -> AbstractConnection:
    """A plain (not robust) connection to the first node of `urls` that answers, for a
    short-lived client (the CLI, a start-up check); the last error if none does."""
    if not urls:
        raise ValueError("no broker URL to connect to")
    last: BaseException | None = None
    for url in urls:
        try:
            return await aio_pika.connect(with_heartbeat(url), timeout=timeout)
        except CONNECT_FAILED as exc:
            last = exc
    assert last is not None
    raise last
