"""Live delivery: which staff member is connected to this gateway replica, and pushing
events to them — every kind, each once, in order, across reconnects and restarts.

Every event the live channel carries (chat messages sent and read, calendar changes,
check-ins, break-glass notices) goes first into one **live log**: the gateway replicas
share a durable queue (so nothing published while every gateway is down is lost), and the
replica that takes an event appends it to a bounded Redis stream under a monotonic integer
`event_id`, with its audience (the accounts and roles allowed to hear it). Every replica
tails that stream and pushes each entry to the connections it is for; a reconnecting
client names the last `event_id` it got (`after_event`) and is sent, before anything
live, every later entry for it, the same audience check as live delivery (`visible`). A
push carries ids, never message text: the client fetches text with a signed request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket
from redis.asyncio import Redis

from mesh.logging import get_logger
from mesh.redis import REDIS_UNAVAILABLE

log = get_logger("gateway.live")

LOG_MAXLEN = 10_000
"""Entries kept (about): a client away for longer than that many events gets `resume_gap`
and reads its screens again, as after a first connect."""
SEEN_TTL_S = 24 * 3600
"""How long an appended event's message id is remembered (a redelivery is not logged twice)."""
READ_PAGE = 500
TAIL_BLOCK_MS = 500
"""Under the Redis client's 1 s socket timeout."""

# KEYS: counter, stream, seen-marker, epoch. ARGV: entry (JSON), maxlen, seen ttl.
# Atomic: the id is one more than both the counter and the newest entry (a counter lost
# while the stream was kept cannot make XADD fail), and a redelivered event is not added.
# The first entry a server appends as a master (the epoch is another server's replication
# id: a replica promoted by a failover, or a master restarted without its data) starts
# past the current time in microseconds: the old master may have handed out ids that
# never reached this one, and ids that went backwards would be skipped as already
# delivered by every connection and follower that saw them. (Numbers are formatted with
# %d: Lua's own formatting writes 16-digit numbers with an exponent.)
_APPEND = """
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[3])) == false then return 0 end
local n = redis.call('INCR', KEYS[1])
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  local t = tonumber(string.match(top[1][1], '^(%d+)'))
  if t >= n then n = t + 1 end
end
local info = redis.call('INFO', 'replication')
local replid = string.match(info, 'master_replid:(%w+)')
if replid and redis.call('GET', KEYS[4]) ~= replid then
  local now = redis.call('TIME')
  local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
  if floor > n then n = floor end
  redis.call('SET', KEYS[4], replid)
end
local id = string.format('%d', n)
redis.call('SET', KEYS[1], id)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[2]), id .. '-0', 'e', ARGV[1])
return n
"""


@dataclass(frozen=True)
class Entry:
    """One logged event: its id, who may hear it, and the frame pushed."""

    event_id: int
    accounts: frozenset[str]
    roles: frozenset[str]
    payload: dict[str, Any]

    def visible(self, account_id: str, role: str) -> bool:
        """The one audience check, for live delivery and for a resume alike."""
        return account_id in self.accounts or role in self.roles

    def frame(self) -> dict[str, Any]:
        return {**self.payload, "event_id": self.event_id}


def _entry_of(raw_id: Any, fields: Any) -> Entry | None:
    """A stream row (redis-py's untyped reply) as an entry; None if it is not one."""
    text_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
    data = fields.get(b"e", fields.get("e")) if isinstance(fields, dict) else None
    try:
        body = json.loads(data or b"")
        return Entry(
            int(text_id.split("-", 1)[0]),
            frozenset(str(a) for a in body["a"]),
            frozenset(str(r) for r in body["r"]),
            dict(body["p"]),
        )
    except (TypeError, ValueError, KeyError, AttributeError):
        log.warning("live.bad_entry", entry=text_id)
        return None


class LiveLog:
    """The bounded, shared log of live events (Redis, under the deployment's prefix)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._counter = f"{prefix}live:counter"
        self._stream = f"{prefix}live:log"
        self._seen = f"{prefix}live:seen:"
        self._epoch = f"{prefix}live:epoch"
        self._append = redis.register_script(_APPEND)

    async def append(
        self,
        message_id: str,
        accounts: Sequence[str],
        roles: Sequence[str],
        payload: dict[str, Any],
    ) -> int:
        """Log one event (once per bus message id); its event id, 0 if already logged."""
        entry = json.dumps({"a": sorted(set(accounts)), "r": sorted(set(roles)), "p": payload})
        keys = [self._counter, self._stream, self._seen + message_id, self._epoch]
        return int(await self._append(keys=keys, args=[entry, LOG_MAXLEN, SEEN_TTL_S]))

    async def head(self) -> int:
        """The newest event id (0 for an empty log)."""
        value = await self._redis.get(self._counter)
        return int(value) if value else 0

    async def oldest(self) -> int | None:
        """The oldest id still kept (None: nothing kept)."""
        rows: Any = await self._redis.xrange(self._stream, "-", "+", count=1)
        if not rows:
            return None
        entry = _entry_of(*rows[0])
        return entry.event_id if entry else None

    async def read(self, after: int, count: int = READ_PAGE) -> list[Entry]:
        """Entries with ids above `after`, oldest first (a page)."""
        rows: Any = await self._redis.xrange(self._stream, f"{after}-1", "+", count=count)
        return [e for e in (_entry_of(i, f) for i, f in rows) if e is not None]

    async def tail(self, after: int) -> list[Entry]:
        """Entries above `after`, waiting briefly for the next one."""
        reply: Any = await self._redis.xread(
            {self._stream: f"{after}-0"}, count=READ_PAGE, block=TAIL_BLOCK_MS
        )
        rows: Any = reply[0][1] if reply else []
        return [e for e in (_entry_of(i, f) for i, f in rows) if e is not None]


@dataclass(eq=False)
class Connection:
    websocket: WebSocket
    account_id: str
    last_message_id: int = 0
    """Highest chat message id sent on this connection: nothing at or below it is re-sent."""
    role: str = ""
    last_event_id: int = 0
    """Highest live-log event id sent on this connection (where a reconnect goes on)."""
    pending: list[Entry] | None = field(default_factory=list)
    """While the connection is being caught up: live entries held back (sent after it)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            message_id = payload.get("message_id")
            if payload.get("type") in ("message", "message_sent") and isinstance(message_id, int):
                if message_id <= self.last_message_id:
                    return  # already sent (catch-up and live push overlapped)
                self.last_message_id = message_id
            await self.websocket.send_json(payload)

    async def deliver(self, entry: Entry) -> None:
        """A live entry: held back during the catch-up, sent at most once, in id order."""
        if self.pending is not None:
            self.pending.append(entry)
            return
        await self._send_entry(entry)

    async def _send_entry(self, entry: Entry) -> None:
        if entry.event_id <= self.last_event_id or not entry.visible(self.account_id, self.role):
            return
        self.last_event_id = entry.event_id
        await self.send(entry.frame())

    async def resume(self, live_log: LiveLog, after: int | None) -> None:
        """Send every entry for this connection after `after` (None: from now on), then
        whatever arrived live meanwhile, then go live."""
        head = await live_log.head()
        if after is None or after > head:  # a first connect, or a log reset since
            self.last_event_id = head
        else:
            self.last_event_id = after
            oldest = await live_log.oldest()
            if after < head and (oldest is None or oldest > after + 1):
                await self.send({"type": "resume_gap", "after_event": after})
            while True:
                page = await live_log.read(self.last_event_id)
                if not page:
                    break
                for entry in page:
                    await self._send_entry(entry)
                    self.last_event_id = max(self.last_event_id, entry.event_id)
        while self.pending:
            held, self.pending = sorted(self.pending, key=lambda e: e.event_id), []
            for entry in held:
                await self._send_entry(entry)
        self.pending = None


class Hub:
    """The connections of this replica, by account."""

    def __init__(self, live_log: LiveLog | None = None) -> None:
        self._by_account: dict[str, set[Connection]] = {}
        self.log = live_log

    def add(self, connection: Connection) -> None:
        self._by_account.setdefault(connection.account_id, set()).add(connection)

    def remove(self, connection: Connection) -> None:
        peers = self._by_account.get(connection.account_id)
        if peers is not None:
            peers.discard(connection)
            if not peers:
                del self._by_account[connection.account_id]

    def connected(self, account_id: str) -> bool:
        return account_id in self._by_account

    async def deliver(self, entry: Entry) -> int:
        """Hand a logged entry to every connection here allowed to hear it."""
        delivered = 0
        for connections in list(self._by_account.values()):
            for connection in list(connections):
                if not entry.visible(connection.account_id, connection.role):
                    continue
                try:
                    await connection.deliver(entry)
                    delivered += 1
                except Exception as exc:  # a closed socket: it leaves on its own
                    log.info("live.push_failed", account_id=connection.account_id, error=str(exc))
        return delivered

    async def follow(self) -> None:
        """Tail the live log for as long as the gateway runs, from its head at start."""
        assert self.log is not None
        after: int | None = None
        while True:
            try:
                if after is None:
                    after = await self.log.head()
                entries = await self.log.tail(after)
                for entry in entries:
                    after = max(after, entry.event_id)
                    await self.deliver(entry)
                if not entries:
                    after = min(after, await self.log.head())  # the log was reset
            except REDIS_UNAVAILABLE as exc:
                log.warning("live.tail_failed", error=str(exc))
                await asyncio.sleep(0.5)
