"""Pieces shared by the Galera tests (test_galera.py, test_galera_partition.py): settings
pointed at one node of a local cluster, the mesh on it, the load's patients and how it is
counted, and what the logs say."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mesh.cluster import galera
from mesh.settings import Settings
from tests.conftest import isolated_settings
from tests.gateway.support import Mesh, Staff, initialise_and_unseal
from tests.processes import Process
from tests.support.patients import registration
from tests.support.polling import until_sync

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
    return registration(f"Load{i}", f"Galera{tag}", "1990-01-01")


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


@contextmanager
def mesh_on_nodes(
    tag: str, cluster: galera.Cluster, log_dir: Path, prefers: Mapping[str, int]
) -> Iterator[Mesh]:
    """The mesh on the cluster, each service (module -> node index) preferring its own node
    and moving back to it within a second; the keyvault unsealed, a gateway. The gateway is
    in `procs` too: the tests check that no process of the mesh exited."""
    with isolated_settings(tag) as base:
        settings = on_node(base, cluster, 0)
        procs: dict[str, Process] = {}
        try:
            for module, first in prefers.items():
                procs[module] = Process(
                    module,
                    settings,
                    log_dir,
                    MEDIHAVEN_DB_HOSTS=on_node(base, cluster, first).db_hosts,
                    MEDIHAVEN_DB_PREFER_INTERVAL_S="1",
                )
            for proc in procs.values():
                proc.wait_ready(90)
            shares = initialise_and_unseal(settings)
            gateway = Process(
                "gateway", settings, log_dir, MEDIHAVEN_RATE_ANONYMOUS_CAPACITY="10000"
            )
            procs["gateway"] = gateway
            gateway.wait_ready()
            yield Mesh(settings, procs, gateway, shares, log_dir)
        finally:
            for proc in procs.values():
                proc.stop()


@dataclass
class Load:
    """Signed registrations through the gateway from a few threads, each with an
    idempotency key and sent again (same key) after a 502/503/504; what was answered,
    created and not as expected. `catch_transport`: a request that got no answer at all is
    noted as unexpected (the partition test) instead of ending its thread (the stop test)."""

    desk: Staff
    key_prefix: str
    catch_transport: bool = False
    total: int = 80
    workers: int = 4
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    statuses: Counter[int] = field(default_factory=Counter)
    created: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _note(self, what: str) -> None:
        with self._lock:
            self.unexpected.append(what)

    def create(self, i: int) -> None:
        key = f"{self.key_prefix}-{self.tag}-{i:04d}"
        for _ in range(60):
            try:
                response = self.desk.client.request(
                    "POST", "/api/v1/patients", patient_body(i, self.tag), idempotency_key=key
                )
            except httpx.HTTPError as exc:  # no answer at all: not a clean failure
                if not self.catch_transport:
                    raise
                self._note(f"{key}: {exc!r}")
                return
            with self._lock:
                self.statuses[response.status_code] += 1
            if response.status_code == 201:
                with self._lock:
                    self.created[key] = response.json()["patient_id"]
                return
            if response.status_code not in RETRYABLE:
                self._note(f"{key}: {response.status_code} {response.text[:300]}")
                return
            time.sleep(0.2)  # a client's pause before it retries (not a wait for a state)
        self._note(f"{key} never succeeded")

    def _worker(self, start: int) -> None:
        for i in range(start, self.total, self.workers):
            self.create(i)

    def start(self, created_first: int = 16) -> None:
        """Start the threads; back once `created_first` patients exist (the load is on)."""
        self._threads = [
            threading.Thread(target=self._worker, args=(s,)) for s in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        assert until_sync(lambda: len(self.created) >= created_first, 90), self.statuses

    def join(self, timeout_s: float) -> None:
        for thread in self._threads:
            thread.join(timeout_s)

    @property
    def finished(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def ids(self) -> set[str]:
        return set(self.created.values())

    def lost(self, stored: int) -> int:
        """Acknowledged writes not stored (`stored`: rows the load added)."""
        return len(self.created) - min(stored, len(self.ids))

    def duplicated(self, stored: int) -> int:
        return max(stored - len(self.ids), 0)

    @property
    def failed_cleanly(self) -> int:
        return sum(n for code, n in self.statuses.items() if code in RETRYABLE)

    def audit_lost(self, admin: Staff) -> int:
        """Created patients whose creation the audit chain does not hold (after giving the
        audit consumer up to a minute to catch up)."""

        def audited() -> set[str]:
            page = admin.client.get("/api/v1/audit/events", type="patient.create", limit=500)
            return {str(e["event"]["entity_id"]) for e in page["entries"]}

        ids = self.ids
        until_sync(lambda: ids <= audited(), 60, 0.5)
        return len(ids - audited())
