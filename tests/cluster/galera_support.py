"""Pieces shared by the Galera tests (test_galera.py, test_galera_partition.py): settings
pointed at one node of a local cluster, the load's patients, and what the logs say."""

from __future__ import annotations

import asyncio
import json

from mesh import db
from mesh.cluster import galera
from mesh.settings import Settings
from tests.processes import Process

RETRYABLE = {502, 503, 504}
"""What the gateway answers when a call could not be served for now: retried by the load."""


def on_node(
    settings: Settings, cluster: galera.Cluster, first: int, *, only: bool = False
) -> Settings:
    """Settings whose database is node `first` (then, unless `only`, the others in turn)."""
    order = cluster.nodes[first:] + cluster.nodes[:first]
    return settings.model_copy(
        update={
            "db_host": order[0].host,
            "db_port": order[0].port,
            "db_hosts": "" if only else ",".join(n.address for n in order),
            "db_sync_wait": 1,  # causal reads on one node too
        }
    )


def patient_body(i: int, tag: str) -> dict[str, object]:
    """A registration the load sends (the same duplicate-checked name never meets another)."""
    return {
        "demographics": {
            "given_name": f"Load{i}",
            "family_name": f"Galera{tag}",
            "date_of_birth": "1990-01-01",
            "sex": "unknown",
        },
        "confirm_duplicate": True,
    }


def patients_in(settings: Settings) -> int:
    """Patients stored (this test's namespace holds only its own)."""

    async def count() -> int:
        database = await db.Database.connect(settings, settings.database("records"))
        try:
            row = await database.fetchone("SELECT COUNT(*) FROM patients")
            return int(row[0]) if row else 0
        finally:
            await database.close()

    return asyncio.run(count())


def moves(proc: Process, service: str = "records") -> list[int]:
    """The nodes (index in its own order) the pools of `proc` on `service`'s database
    moved to, in order (from its `db.node_moved` log lines)."""
    found = []
    for line in proc.log().splitlines():
        if '"db.node_moved"' in line:
            entry = json.loads(line)
            if entry["database"].endswith(f"_{service}"):
                found.append(int(entry["node"]))
    return found
