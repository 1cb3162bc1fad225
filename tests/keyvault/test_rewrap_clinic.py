"""Rotate every key, then rewrap a whole clinic online, with real processes and real
signatures, while staff keep working; `kill -9` the keyvault and then records mid-run.

Afterwards an auditor holding K shares checks every database (`tests/keyvault/offline`):
no row left under a retired key or in an old envelope, every ciphertext decrypts in its
own context, every MAC'd row verifies under the new integrity key, no (key, nonce) pair
repeated anywhere; the staff's concurrent writes are all there; records resumed from its
persisted cursor and counted nothing twice; searches find patients under the new
blind-index key; staff still sign in and the audit chain verifies once the old integrity
key is refused. Then destroy: refused while a row (restored from a backup) still uses
the key, done once none does, and the wrapped key gone from a dump. Last, the shares are
rekeyed and the root key rotated through the gateway, and a keyvault killed afterwards
opens only with the newest shares."""

from __future__ import annotations

import asyncio
import base64
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.public import PrivateKey
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from cli.main import app
from cli.sdk import ApiError, MedihavenClient, sign_prescription
from contracts import keyvault as kv
from mesh.db import Database
from mesh.settings import Settings
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share
from tests.gateway.support import EVERY_SERVICE, Mesh, Staff, mesh
from tests.keyvault.offline import check_every_database
from tests.keyvault.support import unseal
from tests.keyvault.test_dump import encodings
from tests.processes import Process, process_env
from tests.support.dump import DUMP, dump

UNLIMITED = {
    f"MEDIHAVEN_RATE_{kind}_{what}": "100000000"
    for kind in ("GENERAL", "PATIENT", "ANONYMOUS")
    for what in ("CAPACITY", "PER_S")
}
PATIENTS = 10
WEEK = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    """Wait for `check()` (errors while the mesh recovers count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (ApiError, OSError, KeyError):
            pass
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("rewraplogs")
    with mesh("kvrwclinic", logs, services=EVERY_SERVICE, **UNLIMITED) as m:
        yield m


def born(i: int) -> str:
    """A birth date of its own per patient (names that sound alike and share a birth
    date would be flagged as possible duplicates)."""
    return (date(1930, 1, 1) + timedelta(days=i)).isoformat()


def demographics(name: str, i: int) -> dict[str, Any]:
    return {
        "given_name": f"Given{name}",
        "family_name": f"Family{name}",
        "date_of_birth": born(i),
        "sex": "unknown",
        "phone": f"+44 20 7946 {i % 10000:04d}",
    }


def encounter(note: str) -> dict[str, Any]:
    return {
        "content": {
            "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "chief_complaint": note,
            "diagnoses": [{"code": "J45.9"}],
            "allergies": [{"substance": "Penicillin", "severity": "moderate"}],
        }
    }


def prescribe(doctor: Staff, patient_id: str, encounter_id: str) -> dict[str, Any]:
    medication = {
        "drug_name": "Amoxicillin",
        "strength": "500 mg",
        "dosage_form": "capsule",
        "dose": "1 capsule",
        "route": "oral",
        "frequency": "three times daily",
        "duration_days": 7,
        "quantity": 21,
        "refills": 0,
        "free_text": True,
    }
    check = doctor.client.post(
        "/api/v1/prescriptions/check", {"patient_id": patient_id, "medication": medication}
    )
    body = sign_prescription(
        doctor.client.private_key,
        doctor.account_id,
        {
            "prescription_id": str(uuid.uuid4()),
            "patient_id": patient_id,
            "encounter_id": encounter_id,
            "created_at": datetime.now(UTC).isoformat(),
            "medication": medication,
            "alerts": check["codes"],
            "override_reason": "test data" if check["codes"] else "",
        },
    )
    result: dict[str, Any] = doctor.client.post("/api/v1/prescriptions", body)
    return result


@dataclass
class World:
    admin: Staff
    desk: Staff
    doctor: Staff
    patients: list[tuple[str, str, int]] = field(default_factory=list)
    """(patient id, name, birth date index)."""
    prescriptions: list[str] = field(default_factory=list)
    conversation: str = ""
    slot: int = 0


def populate(m: Mesh) -> World:
    world = World(m.admin(), m.staff("receptionist"), m.staff("physician"))
    desk, doctor = world.desk, world.doctor
    desk.client.put(
        f"/api/v1/physicians/{doctor.account_id}/working-hours",
        {"weekly": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in WEEK]},
    )
    for i in range(PATIENTS):
        name = f"P{i}"
        patient_id = desk.client.post("/api/v1/patients", {"demographics": demographics(name, i)})[
            "patient_id"
        ]
        book(world, patient_id)
        first = doctor.client.post(f"/api/v1/patients/{patient_id}/encounters", encounter("one"))
        doctor.client.post(f"/api/v1/patients/{patient_id}/encounters", encounter("two"))
        world.prescriptions.append(
            prescribe(doctor, patient_id, first["encounter_id"])["prescription_id"]
        )
        world.patients.append((patient_id, name, i))
    world.conversation = desk.client.post(
        "/api/v1/chat/direct", {"other_account_id": doctor.account_id}
    )["conversation_id"]
    for i in range(20):
        desk.client.post(
            f"/api/v1/chat/conversations/{world.conversation}/messages", {"text": f"before {i}"}
        )
    return world


def book(world: World, patient_id: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(
        hours=2, minutes=10 * world.slot
    )
    world.slot += 1
    world.desk.client.post(
        "/api/v1/appointments",
        {
            "patient_id": patient_id,
            "physician_id": world.doctor.account_id,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=5)).isoformat(),
            "reason": "check-up",
        },
    )


@dataclass
class Load:
    """Staff at work while the rewrap runs: each success is kept, to be found again."""

    m: Mesh
    world: World
    stop: threading.Event = field(default_factory=threading.Event)
    patients: list[tuple[str, str, int]] = field(default_factory=list)
    encounters: list[tuple[str, str]] = field(default_factory=list)
    """(encounter id, its chief complaint)."""
    messages: list[str] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, staff: Staff) -> MedihavenClient:
        return MedihavenClient(self.m.url, staff.account_id, staff.client.private_key)

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        desk, doctor = self.client(self.world.desk), self.client(self.world.doctor)
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                pick = rng.random()
                if pick < 0.3:
                    name, index = f"L{seed}x{n}", 10000 * (seed + 1) + n
                    created = desk.post(
                        "/api/v1/patients", {"demographics": demographics(name, index)}
                    )
                    with self.lock:
                        self.patients.append((created["patient_id"], name, index))
                elif pick < 0.6:
                    patient_id, _, _ = rng.choice(self.world.patients)
                    note = f"during the rewrap {seed}-{n}"
                    written = doctor.post(
                        f"/api/v1/patients/{patient_id}/encounters", encounter(note)
                    )
                    with self.lock:
                        self.encounters.append((written["encounter_id"], note))
                elif pick < 0.85:
                    text = f"load {seed}-{n}"
                    desk.post(
                        f"/api/v1/chat/conversations/{self.world.conversation}/messages",
                        {"text": text},
                    )
                    with self.lock:
                        self.messages.append(text)
                else:
                    _, name, index = rng.choice(self.world.patients)
                    desk.get(
                        "/api/v1/patients/search",
                        family_name=f"Family{name}",
                        date_of_birth=born(index),
                    )
            except (ApiError, OSError):
                with self.lock:
                    self.errors += 1  # the keyvault or records is being killed: no write
                time.sleep(0.05)
        desk.close()
        doctor.close()


def rewrap_status(world: World) -> dict[str, Any]:
    status: dict[str, Any] = world.admin.client.get("/api/v1/vault/rewrap")
    return status


def tables_of(status: dict[str, Any], service: str) -> list[dict[str, Any]]:
    return [t for t in status["tables"] if t["service"] == service]


async def records_cursor(settings: Settings) -> list[tuple[Any, ...]]:
    database = await Database.connect(settings, settings.database("records"))
    try:
        rows = await database.fetchall(
            "SELECT table_name, pass_number, rows_scanned, rows_rewrapped, done "
            "FROM mesh_rewrap_cursors ORDER BY table_name"
        )
    finally:
        await database.close()
    return [tuple(r) for r in rows]


def restart(m: Mesh, module: str) -> None:
    """`kill -9` the module's process, and start a new one in its place."""
    old = m.procs[module]
    assert old.stop(signal.SIGKILL) == -signal.SIGKILL
    new = Process(module, m.settings, m.log_dir)
    m.procs[module] = new
    new.wait_ready(60)


async def sql(settings: Settings, service: str, query: str, args: tuple[Any, ...] = ()) -> Any:
    database = await Database.connect(settings, settings.database(service))
    try:
        if query.lstrip().upper().startswith("SELECT"):
            return await database.fetchall(query, args)
        return await database.execute(query, args)
    finally:
        await database.close()


def key_of(ciphertext: str) -> int:
    return int.from_bytes(base64.b64decode(ciphertext)[1:5], "big")


def command_line(m: Mesh, home: Path) -> Callable[..., str]:
    """`medihaven …` as a newly registered administrator on this machine."""
    runner = CliRunner()
    env = process_env(
        m.settings, MEDIHAVEN_HOME=str(home), MEDIHAVEN_PASSPHRASE="a long passphrase"
    )
    token = m.admin().client.post("/api/v1/tokens", {"role": "administrator"})["token"]
    args = ["register", "--token", token, "--username", "kvcli", "--display-name", "Kv Cli"]
    registered = runner.invoke(app, [*args, "--url", m.url], env=env)
    assert registered.exit_code == 0, registered.output

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a process's `/metrics` samples of `name` with `labels` (0 when absent)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.timeout(900)  # a throttled run over a whole clinic, under load, with two kills
def test_rotate_rewrap_under_load_kill_9_and_destroy(clinic: Mesh, tmp_path: Path) -> None:
    m = clinic
    world = populate(m)
    cli = command_line(m, tmp_path / "kvcli")
    admin = world.admin.client
    before = asyncio.run(check_every_database(m.settings, m.shares))
    assert before.problems == []
    rows_before = sum(before.rows.values())
    # a backup's copy of one message under its current (soon retired) key
    (backup,) = asyncio.run(
        sql(
            m.settings,
            "chat",
            "SELECT message_id, text_enc FROM messages ORDER BY message_id LIMIT 1",
        )
    )
    retired = {
        purpose: admin.post("/api/v1/vault/rotate", {"purpose": purpose, "add": 4})["retired"]
        for purpose in ("data", "integrity", "blind_index")
    }
    load = Load(m, world)
    with ThreadPoolExecutor(3) as pool:
        workers = [pool.submit(load.run, seed) for seed in range(3)]
        try:
            # started by an administrator on the command line
            started = cli(
                "vault",
                "rewrap",
                "--no-follow",
                "--batch-rows",
                "4",
                "--rows-per-second",
                "60",
                "--lease-seconds",
                "3",
            )
            # the blind-index key rotated: the run recomputes the indexes by itself
            assert "started (reindex: True)" in started
            assert rewrap_status(world)["state"] == "running"
            poll(lambda: rewrap_status(world)["rows_done"] >= 10, 60, "some progress")
            # destroy is refused while the run has not proved anything yet
            old_key = retired["data"][0]
            refused = admin.request("POST", f"/api/v1/vault/keys/{old_key}/destroy", {})
            assert refused.status_code == 409
            # kill -9 the keyvault mid-run; a new one starts sealed and is unsealed
            restart(m, "services.keyvault")
            m.bus(lambda rpc: unseal(rpc, m.shares))
            poll(
                lambda: any(
                    t["rows_scanned"] > 0 and not t["done"]
                    for t in tables_of(rewrap_status(world), "records")
                ),
                120,
                "records at work",
            )
            # kill -9 records mid-run: a new records resumes from the persisted cursor
            cursor = asyncio.run(records_cursor(m.settings))
            restart(m, "services.records")
            resumed = asyncio.run(records_cursor(m.settings))
            for was, now in zip(cursor, resumed, strict=True):
                assert (now[0] == was[0] and (now[1], now[2]) >= (was[1], was[2])) or now[4]
            try:
                poll(lambda: rewrap_status(world)["state"] == "complete", 480, "the run complete")
            except AssertionError:
                print(rewrap_status(world))
                raise
        finally:
            load.stop.set()
            for worker in workers:
                worker.result()
    status = rewrap_status(world)
    assert status["failures"] == [] and status["retired_in_use"] == {}
    shown = cli("vault", "rewrap", "--status")
    assert "complete" in shown and "chat       messages" in shown, shown
    # the same progress as Prometheus metrics (chat was never killed: its counters are whole)
    chat_url = m.procs["services.chat"].url
    moved = metric(chat_url, "medihaven_rewrap_rows_total", table="messages", outcome="rewrapped")
    assert moved == next(
        t["rows_rewrapped"] for t in tables_of(status, "chat") if t["table"] == "messages"
    )
    assert metric(chat_url, "medihaven_rewrap_remaining_rows", table="messages") == 0
    assert metric(m.procs["services.keyvault"].url, "medihaven_keyvault_rewrap_fields_total") > 0
    assert set(status["services_done"]) == {"auth", "records", "scheduling", "chat", "audit"}
    # nothing twice: each row rewrapped at most once though two processes died mid-run
    assert sum(t["rows_rewrapped"] for t in status["tables"]) <= rows_before
    assert load.patients and load.encounters and load.messages
    # the auditor's check of every database, with the shares only
    after = asyncio.run(check_every_database(m.settings, m.shares))
    assert after.problems == [], after.problems[:10]
    retired_ids = {k for ids in retired.values() for k in ids}
    assert not retired_ids & set(after.under)
    # every concurrent write is there, and every patient is found under the new index
    desk, doctor = world.desk.client, world.doctor.client
    for patient_id, name, index in [*world.patients, *load.patients]:
        found = desk.get(
            "/api/v1/patients/search", family_name=f"Family{name}", date_of_birth=born(index)
        )
        assert patient_id in [p["patient_id"] for p in found["patients"]], name
        sound = desk.get(
            "/api/v1/patients/search", family_name=f"Famili{name}", date_of_birth=born(index)
        )
        assert patient_id in [p["patient_id"] for p in sound["patients"]], f"sound of {name}"
    for encounter_id, note in load.encounters:
        read = doctor.get(f"/api/v1/encounters/{encounter_id}")
        assert read["current"]["content"]["chief_complaint"] == note
    texts: set[str] = set()
    last_seen = 0
    while True:  # every page, oldest first: the load may have sent more than one page
        page = desk.get(
            "/api/v1/chat/messages",
            conversation_id=world.conversation,
            after_id=last_seen,
            limit=200,
        )
        texts |= {message["text"] for message in page["messages"]}
        if not page["messages"]:
            break
        last_seen = max(message["message_id"] for message in page["messages"])
    assert set(load.messages) <= texts and {f"before {i}" for i in range(20)} <= texts
    for prescription_id in world.prescriptions:
        verified = doctor.get(f"/api/v1/prescriptions/{prescription_id}/verify")
        assert verified["valid"] and verified["mac_valid"]
    # the old integrity and data keys refused (proved unused by the run itself): staff
    # still sign in, the audit chain still verifies
    for purpose in ("integrity", "data"):
        minimum = admin.post(
            "/api/v1/vault/min-decryption",
            {"purpose": purpose, "min_key_id": max(retired[purpose]) + 1},
        )
        assert set(retired[purpose]) <= set(minimum["refused_keys"])
    assert world.desk.client.get("/api/v1/me")["account_id"] == world.desk.account_id
    assert admin.get("/api/v1/audit/verify")["ok"]
    # destroy: a row restored from a backup still uses the key: refused, and reported
    message_id, old_text = backup
    asyncio.run(
        sql(
            m.settings,
            "chat",
            "UPDATE messages SET text_enc = %s WHERE message_id = %s",
            (old_text, message_id),
        )
    )
    old_key = key_of(old_text)
    in_use = admin.request("POST", f"/api/v1/vault/keys/{old_key}/destroy", {})
    assert in_use.status_code == 409 and in_use.json()["error"]["details"]["in_use"]["chat"] == 1
    asyncio.run(
        sql(m.settings, "chat", "DELETE FROM messages WHERE message_id = %s", (message_id,))
    )
    keyvault_db = m.settings.database("keyvault")
    (wrapped,) = asyncio.run(
        sql(m.settings, "keyvault", "SELECT wrapped FROM vault_keys WHERE key_id = %s", (old_key,))
    )[0]
    destroyed = admin.post(f"/api/v1/vault/keys/{old_key}/destroy", {})
    assert destroyed["state"] == "destroyed" and set(destroyed["checked"].values()) == {0}
    # the operator's view over the bus: the key destroyed, the other retired ones refused
    shown = cli("vault", "status")
    listed = {line.split()[0]: line for line in shown.splitlines() if line.startswith("  ")}
    assert "minimum decryption: " in shown
    assert "destroyed" in listed[str(old_key)]
    assert all("(refused)" in listed[str(k)] for k in set(retired["data"]) - {old_key})
    if DUMP is not None:
        for text in (dump(m.settings, keyvault_db), dump(m.settings, keyvault_db, "--hex-blob")):
            for form in encodings(bytes(wrapped)):
                assert form not in text


def ceremony_over_http(m: Mesh, admin: MedihavenClient, kind: str, threshold: int) -> list[str]:
    """A rekey or root rotation through the gateway, with the mesh's current shares; the
    new shares (their recipient's key made here, as `medihaven vault rekey` does)."""
    recipient = PrivateKey.generate()
    started = admin.post(
        "/api/v1/vault/ceremony",
        {
            "kind": kind,
            "threshold": threshold,
            "shares": threshold + 1,
            "recipient_public_key": public_key_b64(recipient.public_key),
        },
    )
    status = started
    for share in m.shares[: started["required"]]:
        status = admin.post(
            "/api/v1/vault/ceremony/share",
            {
                "ceremony_id": started["ceremony_id"],
                "instance": started["coordinator"],
                "sealed_share": seal_share(started["transport_public_key"], share),
            },
        )
    assert status["state"] == "prepared", status
    new_shares = [open_share(recipient, sealed) for sealed in status["sealed_shares"]]
    committed = admin.post(
        "/api/v1/vault/ceremony/commit",
        {
            "ceremony_id": started["ceremony_id"],
            "instance": started["coordinator"],
            "shares_digest": kv.ceremony_digest(started["ceremony_id"], new_shares),
        },
    )
    assert committed["state"] == "committed", committed
    return new_shares


def unseal_over_http(m: Mesh, share: str) -> httpx.Response:
    (replica,) = httpx.get(f"{m.url}/api/v1/vault/status", timeout=10).json()["replicas"]
    return httpx.post(
        f"{m.url}/api/v1/vault/unseal",
        json={
            "instance": replica["instance"],
            "sealed_share": seal_share(replica["transport_public_key"], share),
        },
        timeout=10,
    )


def test_rekey_then_root_rotation_through_the_gateway_then_kill_9(clinic: Mesh) -> None:
    """Over HTTP with real processes: old shares refused, K-1 new ones leave the restarted
    keyvault sealed, K unseal it, and the clinic's data is intact."""
    m = clinic
    desk = m.staff("receptionist").client
    patient_id = desk.post("/api/v1/patients", {"demographics": demographics("Root", 4242)})[
        "patient_id"
    ]
    admin = m.admin().client
    first = m.shares[:]
    rekeyed = ceremony_over_http(m, admin, "rekey", 2)
    m.shares[:] = rekeyed
    rotated = ceremony_over_http(m, admin, "rotate_root", 3)
    m.shares[:] = rotated
    assert not set(rotated) & set(rekeyed) and not set(rotated) & set(first)
    assert admin.get("/api/v1/vault/ceremony")["generation"] == 1
    restart(m, "services.keyvault")
    for old in (first[0], rekeyed[0]):
        refused = unseal_over_http(m, old)
        assert refused.status_code == 400, refused.text
    for share in rotated[:2]:
        progress = unseal_over_http(m, share)
        assert progress.status_code == 200 and progress.json()["state"] == "sealed"
    opened = unseal_over_http(m, rotated[2])
    assert opened.json()["state"] == "unsealed", opened.text
    poll(
        lambda: any(
            p["patient_id"] == patient_id
            for p in desk.get(
                "/api/v1/patients/search", family_name="FamilyRoot", date_of_birth=born(4242)
            )["patients"]
        ),
        60,
        "the patient found after the root rotation",
    )
    assert admin.get("/api/v1/audit/verify")["ok"]
