"""mesh/metrics.py, read from the process's registry after real calls over RabbitMQ:
each served call counts under its method and outcome (ok or the error code) and is
timed; each published event counts under its routing key."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from contracts.base import rpc_queue
from mesh.errors import Conflict, NotFound
from mesh.settings import Settings
from tests.mesh.fixtures import (
    ECHO,
    FAIL,
    NOTE_WRITTEN,
    SERVICE,
    EchoRequest,
    NoteWritten,
    client_runtime,
    running_service,
)


def served(method: str, outcome: str) -> float:
    labels = {"service": SERVICE, "method": method, "outcome": outcome}
    return REGISTRY.get_sample_value("medihaven_rpc_served_total", labels) or 0.0


def timed(method: str) -> float:
    labels = {"service": SERVICE, "method": method}
    return REGISTRY.get_sample_value("medihaven_rpc_seconds_count", labels) or 0.0


def series_of(metric: str) -> list[dict[str, str]]:
    return [s.labels for m in REGISTRY.collect() if m.name == metric for s in m.samples]


async def test_each_call_counts_under_its_method_and_outcome_and_is_timed(
    settings: Settings,
) -> None:
    before = (served(ECHO.name, "ok"), served(FAIL.name, "conflict"), timed(ECHO.name))
    async with running_service(settings), client_runtime(settings) as client:
        await client.rpc.call(ECHO, EchoRequest(text="a"))
        await client.rpc.call(ECHO, EchoRequest(text="b"))
        with pytest.raises(Conflict):
            await client.rpc.call(FAIL, EchoRequest(text="c"))
    assert served(ECHO.name, "ok") == before[0] + 2
    assert served(FAIL.name, "conflict") == before[1] + 1
    assert timed(ECHO.name) == before[2] + 2


async def test_each_published_event_counts_under_its_routing_key(settings: Settings) -> None:
    labels = {"routing_key": NOTE_WRITTEN.routing_key}
    before = REGISTRY.get_sample_value("medihaven_events_published_total", labels) or 0.0
    async with client_runtime(settings) as client:
        note = NoteWritten(note_id=1, note="n")
        await client.events.publish(NOTE_WRITTEN, note, message_id=str(uuid.uuid4()))
    assert REGISTRY.get_sample_value("medihaven_events_published_total", labels) == before + 1


async def test_made_up_method_names_add_no_series(settings: Settings) -> None:
    made_up = [f"testsvc.nosuch_{uuid.uuid4().hex}" for _ in range(3)]
    async with running_service(settings), client_runtime(settings) as client:
        for name in made_up:
            with pytest.raises(NotFound):
                await client.rpc.call_raw(rpc_queue(SERVICE), name, b"{}")
    methods = {labels.get("method") for labels in series_of("medihaven_rpc_served")}
    assert methods.isdisjoint(made_up)
    assert "unknown" in methods  # counted, under one label
