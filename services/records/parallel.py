"""Run independent calls at once, and fail as a whole only after all of them ended.

`asyncio.gather` without `return_exceptions` returns at the first error and leaves the
other calls running unobserved; here every call has finished (or failed) before the
first error is raised, so nothing still runs when a write's transaction rolls back.
Only RPCs and pool reads go through this, never statements on a transaction's connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")


async def _all(*calls: Awaitable[Any]) -> list[Any]:
    results = await asyncio.gather(*calls, return_exceptions=True)
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
