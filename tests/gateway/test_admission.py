"""Admission at the edge (`gateway.admission`): the pure logic of the turns. The gateway's
use of it, over HTTP with a service that stops answering, is in `test_gateway.py`."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import BUSY, Admission
from gateway.errors import ApiError


async def _hold(gate: Admission, entered: asyncio.Event, leave: asyncio.Event) -> None:
    async with gate.turn():
        entered.set()
        await leave.wait()


async def test_calls_past_the_limit_wait_and_get_the_first_turn_given_back() -> None:
    gate = Admission(limit=2, wait_s=5.0)
    entered = [asyncio.Event() for _ in range(3)]
    leave = [asyncio.Event() for _ in range(3)]
    holders = [asyncio.create_task(_hold(gate, entered[i], leave[i])) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(entered[0].wait(), entered[1].wait()), 2)
    for _ in range(10):  # the third gets every chance to run: it must still be waiting
        await asyncio.sleep(0)
    assert not entered[2].is_set()
    leave[0].set()
    await asyncio.wait_for(entered[2].wait(), 2)
    for event in leave:
        event.set()
    await asyncio.gather(*holders)


async def test_a_call_that_waits_past_wait_s_is_refused_with_503_and_retry_after() -> None:
    gate = Admission(limit=1, wait_s=0.05)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(gate, entered, leave))
    await entered.wait()
    with pytest.raises(ApiError) as refused:
        async with gate.turn():
            pytest.fail("admitted past the limit")
    assert refused.value.status == 503
    assert refused.value.code == "busy"
    assert refused.value.message == BUSY
    assert refused.value.headers == {"Retry-After": "1"}
    leave.set()
    await holder
    async with gate.turn():  # the refused call took no turn away
        pass


async def test_neither_a_cancelled_waiter_nor_a_failing_call_keeps_a_turn() -> None:
    gate = Admission(limit=1, wait_s=5.0)
    entered, leave = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(gate, entered, leave))
    await entered.wait()
    waiter = asyncio.create_task(_hold(gate, asyncio.Event(), asyncio.Event()))
    await asyncio.sleep(0)
    waiter.cancel()  # a client that went away while waiting
    leave.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await waiter
    with pytest.raises(RuntimeError):
        async with gate.turn():
            raise RuntimeError("the service failed")
    again, stay = asyncio.Event(), asyncio.Event()
    last = asyncio.create_task(_hold(gate, again, stay))
    await asyncio.wait_for(again.wait(), 2)  # the one turn is free again
    stay.set()
    await last
