"""`meanwhile`: CPU work overlapped with a call waiting on the network (pure logic)."""

from __future__ import annotations

import asyncio

import pytest

from mesh.parallel import meanwhile


async def test_the_call_is_sent_before_the_work_and_awaited_after() -> None:
    events: list[str] = []
    answered = asyncio.Event()

    async def call() -> str:
        events.append("sent")
        await answered.wait()
        events.append("answered")
        return "confirmed"

    def work() -> int:
        events.append("work")
        asyncio.get_running_loop().call_soon(answered.set)
        return 42

    assert await meanwhile(call(), work) == ("confirmed", 42)
    assert events == ["sent", "work", "answered"]


async def test_failed_work_still_lets_the_call_end_first() -> None:
    ended = asyncio.Event()

    async def call() -> None:
        await asyncio.sleep(0.01)
        ended.set()

    def work() -> None:
        raise ValueError("bad plaintext")

    with pytest.raises(ValueError, match="bad plaintext"):
        await meanwhile(call(), work)
    assert ended.is_set()


async def test_a_failed_call_fails_the_whole() -> None:
    async def call() -> None:
        raise RuntimeError("audit not durable")

    with pytest.raises(RuntimeError, match="not durable"):
        await meanwhile(call(), lambda: 1)
