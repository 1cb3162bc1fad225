"""Run independent calls at once, and fail as a whole only after all of them ended
(records' reads, scheduling's checks: one way to do it in every service).

`asyncio.gather` without `return_exceptions` returns at the first error and leaves the
other calls running unobserved; here every call has finished (or failed) before the
first error is raised, so nothing still runs when a write's transaction rolls back.
Only RPCs and pool reads go through this, never statements on a transaction's connection.
`meanwhile` overlaps CPU work with one call waiting on the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
R = TypeVar("R")


async def settle(*calls: Awaitable[Any]) -> list[Any]:
    """Every call's result or exception, in order, once all of them have ended."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def _all(*calls: Awaitable[Any]) -> list[Any]:
    results = await settle(*calls)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)


async def both(a: Awaitable[A], b: Awaitable[B]) -> tuple[A, B]:
    results = await _all(a, b)
    return cast(A, results[0]), cast(B, results[1])


async def three(a: Awaitable[A], b: Awaitable[B], c: Awaitable[C]) -> tuple[A, B, C]:
    results = await _all(a, b, c)
    return cast(A, results[0]), cast(B, results[1]), cast(C, results[2])


async def four(
    a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], d: Awaitable[D]
) -> tuple[A, B, C, D]:
    results = await _all(a, b, c, d)
    return cast(A, results[0]), cast(B, results[1]), cast(C, results[2]), cast(D, results[3])


async def meanwhile(call: Awaitable[A], work: Callable[[], R]) -> tuple[A, R]:
    """Start `call` (e.g. a confirmed publish), do the CPU-bound `work` while it waits for
    its answer, then wait for it; if `work` fails, `call` still ends before the error."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0)  # let the call send its request before the work starts
    try:
        result = work()
    except BaseException:
        await asyncio.gather(task, return_exceptions=True)
        raise
    return await task, result
