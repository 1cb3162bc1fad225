"""Admission at the edge (`gateway.admission`): the pure logic of the turns. The gateway's
use of it, over HTTP with a service that stops answering, is in `test_gateway.py`."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import BUSY, Admission, too_many_in_progress
from gateway.errors import ApiError


async def _hold(
    gate: Admission, entered: asyncio.Event, leave: asyncio.Event, account: str | None = None
) -> None:
    async with gate.turn(account):
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


async def test_one_account_cannot_take_every_turn() -> None:
    """An account at its bound (turns held and waited for alike) is refused at once with a
    429; another account still gets a turn; the bound is the account's again when one of
    its calls ends, whether it was admitted, waiting, cancelled or failed."""
    gate = Admission(limit=3, wait_s=5.0, per_account=2)
    entered = [asyncio.Event() for _ in range(3)]
    leave = [asyncio.Event() for _ in range(3)]
    first = asyncio.create_task(_hold(gate, entered[0], leave[0], "stolen"))
    second = asyncio.create_task(_hold(gate, entered[1], leave[1], "stolen"))
    await asyncio.wait_for(asyncio.gather(entered[0].wait(), entered[1].wait()), 2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiError) as refused:
        async with gate.turn("stolen"):
            pytest.fail("a third turn for one account")
    assert asyncio.get_running_loop().time() - started < 1  # at once, not after wait_s
    assert refused.value.status == 429
    assert refused.value.code == "rate_limited"
    assert refused.value.message == too_many_in_progress(2)
    assert refused.value.headers == {"Retry-After": "1"}
    other = asyncio.create_task(_hold(gate, entered[2], leave[2], "colleague"))
    await asyncio.wait_for(entered[2].wait(), 2)  # the last free turn is someone else's
    # Every turn taken: the colleague's next call waits, and waiting counts too.
    waiting = asyncio.create_task(_hold(gate, asyncio.Event(), asyncio.Event(), "colleague"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert gate._by_account["colleague"] == 2 and not waiting.done()
    with pytest.raises(ApiError) as refused:
        async with gate.turn("colleague"):
            pytest.fail("a third turn, counting the one waited for")
    assert refused.value.status == 429
    for event in leave:
        event.set()
    await asyncio.gather(first, second, other)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RuntimeError):
        async with gate.turn("stolen"):
            raise RuntimeError("the service failed")
    assert not gate._by_account  # nothing left counted against anybody
    back = [asyncio.Event() for _ in range(2)]
    stay = asyncio.Event()
    again = [asyncio.create_task(_hold(gate, back[i], stay, "stolen")) for i in range(2)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in back)), 2)
    stay.set()
    await asyncio.gather(*again)
