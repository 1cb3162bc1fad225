"""The wire is defined once, in contracts/, and exported as AsyncAPI."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.asyncapi import document
from contracts.common import SERVICES, collect

ROOT = Path(__file__).resolve().parents[1]


def test_asyncapi_lists_every_service_queue_and_method() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    for service in SERVICES:
        assert f"rpc.{service}" in doc["channels"]
        assert f"{service}_ping" in doc["operations"]


def test_method_names_are_unique_and_prefixed_by_their_service() -> None:
    methods, events = collect()
    names = [m.name for m in methods]
    assert len(names) == len(set(names))
    for m in methods:
        assert m.name.startswith(f"{m.service}.")
    assert len({e.routing_key for e in events}) == len(events)


def test_no_queue_or_method_literal_outside_contracts() -> None:
    """Services and the gateway refer to contract objects, never to wire strings."""
    methods, events = collect()
    names = {m.name for m in methods} | {e.routing_key for e in events}
    names |= {f"rpc.{s}" for s in SERVICES}
    pattern = re.compile(r"""["']([a-z_.@-]+)["']""")
    offenders = []
    for folder in ("services", "gateway", "mesh", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if any(m in names for m in pattern.findall(line)):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
