"""Live delivery: which staff member is connected to this gateway replica, and pushing
events to them.

Every gateway replica consumes chat (and appointment) events on its own exclusive queue
and pushes each to the recipients connected to it. A push carries ids, never message
text: the client fetches text with a signed request (the keyvault decrypts only for a
fresh signature), and a reconnecting client passes the last id it saw to catch up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket

from mesh.logging import get_logger

log = get_logger("gateway.live")


@dataclass(eq=False)
class Connection:
    websocket: WebSocket
    account_id: str
    last_message_id: int = 0
    role: str = ""
    """Highest chat message id sent on this connection: nothing at or below it is re-sent."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            message_id = payload.get("message_id")
            if payload.get("type") in ("message", "message_sent") and isinstance(message_id, int):
                if message_id <= self.last_message_id:
                    return  # already sent (catch-up and live push overlapped)
                self.last_message_id = message_id
            await self.websocket.send_json(payload)


class Hub:
    """The connections of this replica, by account."""

    def __init__(self) -> None:
        self._by_account: dict[str, set[Connection]] = {}

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

    async def push_role(self, role: str, payload: dict[str, Any]) -> int:
        """Send `payload` to every connected staff member of `role` (e.g. administrators)."""
        accounts = [
            account_id
            for account_id, peers in self._by_account.items()
            if any(c.role == role for c in peers)
        ]
        return await self.push(accounts, payload)

    async def push(self, account_ids: list[str], payload: dict[str, Any]) -> int:
        """Send `payload` to every connection of these accounts; returns how many got it."""
        delivered = 0
        for account_id in account_ids:
            for connection in list(self._by_account.get(account_id, ())):
                try:
                    await connection.send(payload)
                    delivered += 1
                except Exception as exc:  # a closed socket: it leaves on its own
                    log.info("live.push_failed", account_id=account_id, error=str(exc))
        return delivered
