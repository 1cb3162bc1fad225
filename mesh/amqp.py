"""The robust connection every process holds, to one node of a RabbitMQ cluster at a time.

aio-pika's `connect_robust` takes one URL and, after losing it, retries that URL only: a
client of a killed node would wait for that very node to come back. `ClusterConnection`
is aio-pika's `RobustConnection` (channels, queues, bindings and consumers restored
after a reconnect, exactly as before) whose every connection attempt goes to the next
URL of the list in turn: the first attempt to the first URL, and after a loss (or a
refused attempt) the next node, round robin. aio-pika reads `self.url` once per attempt
(`Connection.connect`), which is where the turn is taken; the log line shows the URL
without its password (`__str__`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL

BUS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.ChannelInvalidStateError,  # a RuntimeError: "channel closed"
    ConnectionError,
)
"""What a publish or call raises while the broker (or this client's node) is gone."""

CONNECT_FAILED: tuple[type[BaseException], ...] = (TimeoutError, *BUS_UNAVAILABLE)

RECONNECT_INTERVAL_S = 1.0
"""Pause between attempts (aio-pika's default is 5 s; with a list, the next attempt is
another node, so there is no reason to wait long)."""


class ClusterConnection(RobustConnection):
    """A robust connection that tries the nodes of a cluster in turn (see the module)."""

    def __init__(self, url: URL, *, urls: Sequence[str], **kwargs: Any) -> None:
        self._urls = [URL(u) for u in urls] or [URL(url)]
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
    timeout: float | None = None,
    reconnect_interval: float = RECONNECT_INTERVAL_S,
) -> AbstractRobustConnection:
    """A robust connection to the first node of `urls` that answers (tried in order).

    The first connection must succeed within the list (each node refusing counts as one
    attempt), else the last error is raised; later losses reconnect in the background.
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
            return await aio_pika.connect(url, timeout=timeout)
        except CONNECT_FAILED as exc:
            last = exc
    assert last is not None
    raise last
