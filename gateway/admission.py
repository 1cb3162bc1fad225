"""Admission at the edge: at most `limit` user calls from this gateway process are in the
mesh at once; the others wait here, before their RPC deadline starts.

Why: past what the mesh can serve, requests queue on the bus instead, where the oldest
outlive their RPC deadline (a 504) while the services still do their work, so more load
means more wasted work and less served (issue 17's c=256 check ended in 504s). Waiting at
the gateway costs the mesh nothing, every admitted call has its whole deadline, and a call
that waits longer than `wait_s` is refused with a 503 and Retry-After, so no request ever
hangs. Each account's token buckets (`gateway.ratelimit`) bound how many turns one account
can ask for.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import ApiError
from mesh.metrics import GATEWAY_ADMITTED, GATEWAY_REFUSED_BUSY, GATEWAY_WAITING

BUSY = (
    "Medihaven is very busy right now and could not take this request in time; "
    "nothing was changed: please try again in a few seconds"
)


class Admission:
    """A bounded number of turns, handed out first come, first served."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self._turns = asyncio.Semaphore(limit)
        self._retry_after = str(max(1, math.ceil(wait_s)))

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the turns while the block runs (a 503 if none came within wait_s)."""
        if self._turns.locked():
            await self._wait_for_turn()
        else:
            await self._turns.acquire()  # one is free (and nobody waits): no timer to set
        GATEWAY_ADMITTED.inc()
        try:
            yield
        finally:
            GATEWAY_ADMITTED.dec()
            self._turns.release()

    async def _wait_for_turn(self) -> None:
        GATEWAY_WAITING.inc()
        try:
            async with asyncio.timeout(self.wait_s):
                await self._turns.acquire()
        except TimeoutError:
            GATEWAY_REFUSED_BUSY.inc()
            busy = {"Retry-After": self._retry_after}
            raise ApiError(503, BUSY, code="busy", headers=busy) from None
        finally:
            GATEWAY_WAITING.dec()
