"""Waiting for something to happen, without fixed sleeps: poll a condition until a deadline.

The one polling helper of the tests: `until` in async tests, `until_sync` in the tests
that drive processes and browsers from plain functions."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Condition = Callable[[], Any | Awaitable[Any]]


async def until(condition: Condition, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """The first truthy value of `condition()` (awaited if it is a coroutine);
    AssertionError if there is none by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        await asyncio.sleep(interval)


def until_sync(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    """True as soon as `predicate()` is, False if it is not by `timeout` (so a test can
    `assert until_sync(...), "what did not happen"`)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
