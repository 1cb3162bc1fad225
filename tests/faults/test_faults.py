"""Fault tests against real processes: a replica killed under load, the keyvault sealed
under load, MariaDB and RabbitMQ restarted. Each is bounded in time and cleans up."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.keyvault.sealedbox import seal_share
from tests.gateway.support import Mesh, mesh
from tests.processes import Process, running
from tests.support.patients import patients_in, registration
from tests.support.polling import until_sync

RETRYABLE = {502, 503, 504}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("faultlogs")
    with mesh("faults", logs) as m, running(["services.records"], m.settings, logs):
        yield m


def patient_body(i: int, tag: str) -> dict[str, object]:
    return registration(f"Load{i}", f"Fault{tag}", "1990-01-01")


def test_killing_a_records_replica_under_load_loses_nothing_and_writes_once(
    world: Mesh, tmp_path: Path
) -> None:
    second = Process("services.records", world.settings, tmp_path)
    second.wait_ready()
    before = patients_in(world.settings)
    desk = world.staff("receptionist")
    tag = uuid.uuid4().hex[:6]
    statuses: Counter[int] = Counter()
    created: dict[str, str] = {}
    lock = threading.Lock()
    done = threading.Event()

    def create(i: int) -> None:
        key = f"load-{tag}-{i:04d}"
        for _ in range(40):
            response = desk.client.request(
                "POST", "/api/v1/patients", patient_body(i, tag), idempotency_key=key
            )
            with lock:
                statuses[response.status_code] += 1
            if response.status_code == 201:
                with lock:
                    created[key] = response.json()["patient_id"]
                return
            assert response.status_code in RETRYABLE, response.text
            time.sleep(0.2)
        raise AssertionError(f"{key} never succeeded")

    def worker(start: int) -> None:
        for i in range(start, 60, 4):
            create(i)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    assert until_sync(lambda: len(created) >= 15, 60)
    second.stop(signal.SIGKILL)  # one of the two replicas dies mid-load
    for thread in threads:
        thread.join(120)
    done.set()
    assert len(created) == 60, statuses
    assert set(statuses) <= {201} | RETRYABLE, statuses
    ids = set(created.values())
    assert len(ids) == 60  # one patient per idempotency key
    assert patients_in(world.settings) - before == 60, "a write happened twice (or was lost)"


def test_sealed_keyvault_refuses_patient_data_but_staff_routes_keep_working(world: Mesh) -> None:
    admin, desk = world.admin(), world.staff("receptionist")
    patient = desk.client.post("/api/v1/patients", patient_body(1, uuid.uuid4().hex[:6]))
    path = f"/api/v1/patients/{patient['patient_id']}"
    assert desk.client.request("GET", path).status_code == 200
    assert desk.client.get("/api/v1/me")["role"] == "receptionist"
    admin.client.post("/api/v1/vault/seal")
    try:
        for _ in range(10):
            response = desk.client.request("GET", path)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "sealed"
        # non-PHI routes of known staff keep working
        assert desk.client.get("/api/v1/me")["role"] == "receptionist"
        assert admin.client.get("/api/v1/staff")["accounts"]
        assert admin.client.get("/api/v1/audit/events", limit=1)["entries"]
    finally:
        replica = httpx.get(f"{world.url}/api/v1/vault/status", timeout=10).json()["replicas"][0]
        for share in world.shares[:3]:
            httpx.post(
                f"{world.url}/api/v1/vault/unseal",
                json={
                    "instance": replica["instance"],
                    "sealed_share": seal_share(replica["transport_public_key"], share),
                },
                timeout=10,
            )
    assert desk.client.request("GET", path).status_code == 200


def run(*command: str) -> None:
    subprocess.run(list(command), check=True, capture_output=True, timeout=120)


def mariadb_pid_file() -> str:
    """The machine's own server's pid file: stopping and starting by it (and not by the
    executable alone) leaves alone the Galera nodes a cluster test may run beside it, and
    a start is not skipped as "already running" because one of them is."""
    return subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-u", "root", "-N", "-e", "SELECT @@pid_file"],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()


def mariadb_up() -> bool:
    return (
        subprocess.run(
            ["mariadb-admin", "ping", "-h", "127.0.0.1", "-u", "root"],
            capture_output=True,
            timeout=10,
        ).returncode
        == 0
    )


@pytest.mark.skipif(shutil.which("start-stop-daemon") is None, reason="needs start-stop-daemon")
def test_mariadb_restart_fails_cleanly_and_recovers(world: Mesh) -> None:
    desk = world.staff("receptionist")
    assert desk.client.request("GET", "/api/v1/me").status_code == 200
    server = ("--pidfile", mariadb_pid_file(), "--exec", "/usr/sbin/mariadbd")
    try:
        run("start-stop-daemon", "--stop", "--retry", "30", *server)
        assert until_sync(lambda: not mariadb_up(), 30)
        codes = {desk.client.request("GET", "/api/v1/patients", None).status_code for _ in range(5)}
        assert codes <= RETRYABLE, codes  # a clean 503, never a 500
    finally:
        run("start-stop-daemon", "--start", "--oknodo", "--background", *server)
        assert until_sync(mariadb_up, 60)
    # the services recover on their own (no restart)
    assert until_sync(lambda: desk.client.request("GET", "/api/v1/patients").status_code == 200, 60)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_rabbitmq_restart_reconnects_and_loses_no_audit_event(world: Mesh) -> None:
    admin = world.admin()
    before = admin.client.post("/api/v1/tokens", {"role": "physician"})["token_id"]
    try:
        run("rabbitmqctl", "stop_app")
        codes = {admin.client.request("GET", "/api/v1/me").status_code for _ in range(3)}
        assert codes <= RETRYABLE, codes
    finally:
        run("rabbitmqctl", "start_app")
        run("rabbitmqctl", "await_startup")

    def healthy() -> bool:
        return admin.client.request("GET", "/api/v1/me").status_code == 200

    assert until_sync(healthy, 90, 1.0), "the mesh did not reconnect"
    after = admin.client.post("/api/v1/tokens", {"role": "physician"})["token_id"]

    def audited() -> bool:
        """Both events are in the chain. Every service reconnects on its own: auth may
        answer (`healthy`) before the audit service has declared its queue again, and
        until it has, reading the log is a 503 (no route), which is "not yet"."""
        response = admin.client.request(
            "GET", "/api/v1/audit/events", None, {"type": "auth.token_issued", "limit": 500}
        )
        if response.status_code in RETRYABLE:
            return False
        assert response.status_code == 200, response.text
        ids = {e["event"]["entity_id"] for e in response.json()["entries"]}
        return {before, after} <= ids

    assert until_sync(audited, 60, 0.5), "an audit event was lost"
    assert admin.client.get("/api/v1/audit/verify")["ok"]
