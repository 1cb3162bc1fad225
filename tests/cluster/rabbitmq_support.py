"""What the RabbitMQ node-loss tests share: the patients they write, where to count them
(the records database, the audit chain) and how, and when they run."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pytest

from mesh.cluster import rabbitmq
from mesh.db import Database
from tests.gateway.support import Mesh, Staff
from tests.support.patients import registration
from tests.support.polling import until_sync

NEEDS_RABBITMQ = pytest.mark.skipif(
    not rabbitmq.SERVER.is_file() and not os.environ.get("CI"),  # CI: fail instead
    reason="needs rabbitmq-server",
)
"""The local clusters run the machine's rabbitmq-server."""

CLEAN_FAILURES = frozenset({503, 504})
"""Refused while the bus fails over: a clean, retryable answer (never a 500)."""


def patient_body(i: int, tag: str) -> dict[str, object]:
    return registration(f"Node{i}", f"Cluster{tag}", "1980-02-03")


def patient_ids_in_database(world: Mesh) -> list[str]:
    """Every patient row (duplicates included: that is what is counted)."""

    async def ids() -> list[str]:
        database = await Database.connect(world.settings, world.settings.database("records"))
        try:
            rows = await database.fetchall("SELECT patient_id FROM patients")
            return [str(r[0]) for r in rows]
        finally:
            await database.close()

    return asyncio.run(ids())


def audited_creations(admin: Staff, retry_on: Collection[int] = CLEAN_FAILURES) -> set[str]:
    """The patients whose creation the chain holds. While a service is still moving to
    another node its queries may answer 503/504 (a clean refusal): asked again then."""
    found: list[Any] = []

    def query() -> bool:
        response = admin.client.request(
            "GET", "/api/v1/audit/events", params={"type": "patient.create", "limit": 500}
        )
        if response.status_code in retry_on:
            return False
        assert response.status_code == 200, response.text
        found.append(response.json())
        return True

    assert until_sync(query, 60, 0.5), "the audit service did not answer again"
    page = found[0]
    return {
        str(e["event"].get("patient_id") or e["event"].get("entity_id"))
        for e in page["entries"]
        if e["event"].get("outcome") == "success"
    }


@dataclass(frozen=True)
class Written:
    """What became of a load's writes: the patients it was told were created
    (`acknowledged`), the rows it added (`new`), and what is missing or doubled."""

    acknowledged: set[str]
    new: list[str]
    lost: set[str]
    duplicated: int
    audit_lost: set[str]

    def summary(self, writes: int) -> str:
        """The counts both load tests print, in the same words."""
        return (
            f"writes acknowledged {len(self.acknowledged)}/{writes}, lost {len(self.lost)}, "
            f"duplicated {self.duplicated}; audit events lost {len(self.audit_lost)}"
        )

    def assert_whole(self, writes: int, created: dict[str, str], statuses: Counter[int]) -> None:
        """Every one of `writes` acknowledged once, stored once and audited."""
        assert len(self.acknowledged) == writes, statuses  # every write got through in the end
        assert len(created) == len(self.acknowledged)  # one patient per idempotency key
        assert not self.lost, "an acknowledged write is missing"
        assert self.duplicated == 0, "a write happened twice"
        assert not self.audit_lost, "an audit event was lost"


def count_writes(
    world: Mesh,
    admin: Staff,
    before: set[str],
    created: dict[str, str],
    retry_on: Collection[int] = CLEAN_FAILURES,
) -> Written:
    """Count a finished load's writes against the database and the audit chain (`before`:
    the patient ids there before it; the audit consumer may lag: given a minute)."""
    new = [p for p in patient_ids_in_database(world) if p not in before]
    acknowledged = set(created.values())
    duplicated = len(new) - len(set(new)) + len(set(new) - acknowledged)
    until_sync(lambda: acknowledged <= audited_creations(admin, retry_on), 60, 0.5)
    audit_lost = acknowledged - audited_creations(admin, retry_on)
    return Written(acknowledged, new, acknowledged - set(new), duplicated, audit_lost)
