"""Admission at the edge: at most `limit` user calls from this gateway process are in the
mesh at once; the others wait here, before their RPC deadline starts.

Why: past what the mesh can serve, requests queue on the bus instead, where the oldest
outlive their RPC deadline (a 504) while the services still do their work, so more load
means more wasted work and less served (issue 17's c=256 check ended in 504s). Waiting at
the gateway costs the mesh nothing, every admitted call has its whole deadline, and a call
that waits longer than `wait_s` is refused with a 503 and Retry-After, so no request ever
hangs. One account holds or waits for at most `per_account` turns at once (its next call
is refused with a 429 at once): its token buckets (`gateway.ratelimit`) let a burst of 30
patient-data calls through, and without this bound one account, a script gone wrong or a
stolen key, could hold most of the turns and make the rest of the clinic wait.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import ApiError
from mesh.metrics import (
    GATEWAY_ADMITTED,
    GATEWAY_REFUSED_ACCOUNT,
    GATEWAY_REFUSED_BUSY,
    GATEWAY_WAITING,
)

BUSY = (
    "Medihaven is very busy right now and could not take this request in time; "
    "nothing was changed: please try again in a few seconds"
)


def too_many_in_progress(count: int) -> str:
    requests = "request" if count == 1 else "requests"
    return f"you already have {count} {requests} in progress; wait for them to finish and try again"


class Admission:
    """A bounded number of turns, handed out first come, first served."""

    def __init__(self, limit: int, wait_s: float, *, per_account: int | None = None) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.per_account = per_account if per_account is not None else max(1, limit // 4)
        self._turns = asyncio.Semaphore(limit)
        self._retry_after = str(max(1, math.ceil(wait_s)))
        self._by_account: Counter[str] = Counter()

    @asynccontextmanager
    async def turn(self, account: str | None = None) -> AsyncIterator[None]:
        """Hold one of the turns while the block runs: a 429 if `account` already holds
        or waits for `per_account` of them, a 503 if none came within wait_s."""
        if account is not None:
            if self._by_account[account] >= self.per_account:
                GATEWAY_REFUSED_ACCOUNT.inc()
                raise ApiError(
                    429,
                    too_many_in_progress(self.per_account),
                    code="rate_limited",
                    headers={"Retry-After": "1"},
                )
            self._by_account[account] += 1
        try:
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
        finally:
            if account is not None:
                self._by_account[account] -= 1
                if not self._by_account[account]:
                    del self._by_account[account]

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
