"""What the RabbitMQ node-loss tests share: the patients they write, where to count them
(the records database, the audit chain)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from mesh.db import Database
from tests.gateway.support import Mesh, Staff
from tests.support.polling import until_sync

CLEAN_FAILURES = frozenset({503, 504})
"""Refused while the bus fails over: a clean, retryable answer (never a 500)."""


def patient_body(i: int, tag: str) -> dict[str, object]:
    return {
        "demographics": {
            "given_name": f"Node{i}",
            "family_name": f"Cluster{tag}",
            "date_of_birth": "1980-02-03",
            "sex": "unknown",
        },
        "confirm_duplicate": True,
    }


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
