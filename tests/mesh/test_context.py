"""mesh/context.py: trace ids are read only from well-formed traceparents, fresh ones are
unique, a call context says how long is left, and its `tx` is there only inside a write."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from mesh.context import CallContext, current_call, new_traceparent, trace_id_of

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


def test_a_fresh_traceparent_is_well_formed_and_unique() -> None:
    made = {new_traceparent() for _ in range(100)}
    assert len(made) == 100
    assert all(TRACEPARENT.fullmatch(t) for t in made)
    assert len({trace_id_of(t) for t in made}) == 100


def test_a_traceparent_for_a_given_trace_keeps_it_with_a_new_span() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    one, two = new_traceparent(trace), new_traceparent(trace)
    assert trace_id_of(one) == trace_id_of(two) == trace
    assert one != two


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "00-abc-def-01", "00-" + "a" * 31 + "-" + "b" * 16 + "-01", "a-b-c"],
)
def test_a_malformed_traceparent_has_no_trace_id(value: str | None) -> None:
    assert trace_id_of(value) is None
    assert CallContext("m", traceparent=value or "").trace_id == ""


def test_a_context_defaults_to_no_principal_and_a_deadline_ahead() -> None:
    ctx = CallContext("svc.method")
    assert ctx.principal is None and ctx.operation is None and ctx.caller is None
    assert 29 < ctx.remaining() <= 30
    assert TRACEPARENT.fullmatch(ctx.traceparent)
    assert CallContext("m", deadline=time.time() - 1).remaining() < 0


def test_no_call_is_current_outside_a_handler() -> None:
    assert current_call.get() is None


class _Conn:
    """A stand-in for a transaction's connection (`mesh.db.Connection`)."""

    def cursor(self, *cursor_types: Any) -> Any:
        raise AssertionError("not used")


def test_tx_raises_outside_a_write_and_is_the_connection_inside() -> None:
    ctx = CallContext("svc.read_thing")
    with pytest.raises(RuntimeError, match=r"svc\.read_thing has no open transaction"):
        _ = ctx.tx
    conn = _Conn()
    ctx.transaction = conn  # as mesh.idempotency.run_idempotent does around a write
    assert ctx.tx is conn
    ctx.transaction = None
    with pytest.raises(RuntimeError, match="no open transaction"):
        _ = ctx.tx
