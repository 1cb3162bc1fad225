"""The online rewrap (`mesh.rewrap`) in real services (scheduling and chat, in process)
against a real keyvault, MariaDB and RabbitMQ: every row moved to the active keys while a
user keeps writing (their changes stand), rows written meanwhile under a retired key
caught by the next pass, no (key, nonce) pair ever repeated, the cursor persisted so a
replica that stops mid-run is taken over where it stopped; and the SQL and checks made
from a declaration."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import keyvault as kv
from contracts.base import Role
from contracts.rewrap import CHAT_KEY_USAGE, SCHEDULING_KEY_USAGE
from mesh import db
from mesh.rewrap import Col, Mac, Table
from mesh.runtime import Runtime
from services.chat import rewrap as chat_rewrap
from services.keyvault import ciphers
from services.keyvault.state import vault_of
from services.scheduling import rewrap as scheduling_rewrap
from tests.support.clinic import Clinic, StaffMember, clinic
from tests.support.polling import until

ROOT = Path(__file__).resolve().parents[2]
APPOINTMENTS = 240
MESSAGES = 120


@asynccontextmanager
async def service(c: Clinic, name: str, router: Any) -> AsyncIterator[Runtime]:
    runtime = await Runtime.start(
        name, c.settings, router=router, migrations=ROOT / "services" / name / "migrations"
    )
    c.services.append(runtime)
    try:
        yield runtime
    finally:
        await runtime.stop()


def binding(patient: str, physician: str) -> dict[str, str]:
    return {"patient": patient, "physician": physician}


async def appointments(c: Clinic, database: db.Database, count: int) -> dict[str, dict[str, Any]]:
    """Rows written straight into scheduling's table, encrypted by the clinic's keyvault."""
    rows: dict[str, dict[str, Any]] = {}
    for i in range(count):
        rows[str(uuid.uuid4())] = {
            "patient": f"patient-{i % 17}",
            "physician": f"doctor-{i % 3}",
            "reason": f"reason {i}",
            "cancel": f"cancelled because {i}" if i % 4 == 0 else None,
        }
    fields = [
        kv.FieldRow(
            table="appointments",
            row_id=key,
            fields={
                "reason": r["reason"],
                **({"cancel_reason": r["cancel"]} if r["cancel"] else {}),
            },
            binding=binding(r["patient"], r["physician"]),
        )
        for key, r in rows.items()
    ]
    encrypted = await c.encrypt(fields)
    start = datetime(2030, 1, 1, 9, 0)
    async with database.transaction() as conn:
        for n, ((key, r), cipher) in enumerate(zip(rows.items(), encrypted, strict=True)):
            at = start + timedelta(minutes=30 * n)
            await db.execute(
                conn,
                "INSERT INTO appointments (appointment_id, physician_id, patient_id, start_at, "
                "end_at, status, reason_enc, cancel_reason_enc, booked_by, updated_by, "
                "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, 'booked', %s, %s, 'desk', "
                "'desk', %s, %s)",
                (
                    key,
                    r["physician"],
                    r["patient"],
                    at,
                    at + timedelta(minutes=20),
                    cipher["reason"],
                    cipher.get("cancel_reason"),
                    at,
                    at,
                ),
            )
    return rows


async def messages(c: Clinic, database: db.Database, count: int) -> dict[int, str]:
    conversation = str(uuid.uuid4())
    (name,) = await c.encrypt(
        [
            kv.FieldRow(
                table="conversations",
                row_id=conversation,
                fields={"name": "ward 3"},
                binding={"conversation": conversation},
            )
        ]
    )
    uuids = [str(uuid.uuid4()) for _ in range(count)]
    texts = await c.encrypt(
        [
            kv.FieldRow(
                table="messages",
                row_id=u,
                fields={"text": f"message {i}"},
                binding={"conversation": conversation},
            )
            for i, u in enumerate(uuids)
        ]
    )
    async with database.transaction() as conn:
        await db.execute(
            conn,
            "INSERT INTO conversations (conversation_id, kind, name_enc, created_by) "
            "VALUES (%s, 'group', %s, 'desk')",
            (conversation, name["name"]),
        )
        for i, (u, text) in enumerate(zip(uuids, texts, strict=True)):
            await db.execute(
                conn,
                "INSERT INTO messages (message_id, message_uuid, conversation_id, sender_id, "
                "text_enc) VALUES (%s, %s, %s, 'desk', %s)",
                (i + 1, u, conversation, text["text"]),
            )
    return {i + 1: f"message {i}" for i in range(count)}


def header(ciphertext: str) -> tuple[int, int, bytes]:
    raw = base64.b64decode(ciphertext)
    parsed = ciphers.parse_field(raw)
    return parsed.version, parsed.key_id, parsed.nonce


async def status(c: Clinic, admin: StaffMember) -> kv.RewrapStatus:
    return await c.call(kv.REWRAP_STATUS, kv.RewrapStatusRequest(), admin)


def done(found: kv.RewrapStatus, service: str) -> bool:
    tables = [t for t in found.tables if t.service == service]
    return bool(tables) and all(t.done for t in tables)


async def test_a_service_rewraps_online_keeping_what_users_write() -> None:
    async with (
        clinic("mrewrap") as c,
        service(c, "scheduling", scheduling_rewrap.router) as scheduling,
        service(c, "chat", chat_rewrap.router) as chat,
    ):
        assert scheduling.db is not None and chat.db is not None
        booked = await appointments(c, scheduling.db, APPOINTMENTS)
        sent = await messages(c, chat.db, MESSAGES)
        admin = await c.add_staff("rewrap-admin", Role.administrator)
        # ciphertexts made just before the rotation, as by a request still in flight
        late_ids = random.Random(1).sample(sorted(booked), 12)
        late = await c.encrypt(
            [
                kv.FieldRow(
                    table="appointments",
                    row_id=key,
                    fields={"reason": f"late write {key}"},
                    binding=binding(booked[key]["patient"], booked[key]["physician"]),
                )
                for key in late_ids
            ]
        )
        rotated = await c.call(kv.ROTATE, kv.RotateRequest(add=4), admin)
        started = await c.call(
            kv.REWRAP_START,
            kv.RewrapStartRequest(batch_rows=20, rows_per_second=120, lease_seconds=3),
            admin,
        )
        assert started.state is kv.RewrapState.running
        # a user keeps changing appointments while the rewrap runs
        written: dict[str, str] = {}
        stop = asyncio.Event()
        # (its own connection pool: the user's replica is not the one that stops below)
        users_db = await db.Database.connect(c.settings, c.settings.database("scheduling"))

        async def user() -> None:
            rng = random.Random(2)
            while not stop.is_set():
                key = rng.choice(sorted(set(booked) - set(late_ids)))
                text = f"changed by a user {uuid.uuid4().hex[:6]}"
                (cipher,) = await c.encrypt(
                    [
                        kv.FieldRow(
                            table="appointments",
                            row_id=key,
                            fields={"reason": text},
                            binding=binding(booked[key]["patient"], booked[key]["physician"]),
                        )
                    ]
                )
                await users_db.execute(
                    "UPDATE appointments SET reason_enc = %s WHERE appointment_id = %s",
                    (cipher["reason"], key),
                )
                written[key] = text
                await asyncio.sleep(0.01)

        writer = asyncio.create_task(user())

        async def passed_half() -> bool:
            row = await scheduling.db.fetchone(  # type: ignore[union-attr]
                "SELECT rows_scanned FROM mesh_rewrap_cursors WHERE table_name = 'appointments'"
            )
            return row is not None and int(row[0]) >= APPOINTMENTS // 2

        await until(passed_half, timeout=60)
        # the in-flight requests land now, under a key retired just before: the next pass
        # (the verification pass) must find them
        for key, cipher in zip(late_ids, late, strict=True):
            await scheduling.db.execute(
                "UPDATE appointments SET reason_enc = %s WHERE appointment_id = %s",
                (cipher["reason"], key),
            )
            written[key] = f"late write {key}"
        # the scheduling replica stops mid-run; another takes over where it stopped
        cursor = await scheduling.db.fetchone(
            "SELECT pass_number, rows_scanned FROM mesh_rewrap_cursors "
            "WHERE table_name = 'appointments'"
        )
        assert cursor is not None
        await scheduling.stop()
        async with service(c, "scheduling", scheduling_rewrap.router) as replacement:
            assert replacement.db is not None
            resumed = await replacement.db.fetchone(
                "SELECT pass_number, rows_scanned FROM mesh_rewrap_cursors "
                "WHERE table_name = 'appointments'"
            )
            assert resumed is not None and tuple(resumed) >= tuple(cursor)  # not from 0

            async def both_done() -> bool:
                found = await status(c, admin)
                return done(found, "scheduling") and done(found, "chat")

            await until(both_done, timeout=120, interval=0.2)
            stop.set()
            await writer
            await users_db.close()
            # the other owners (records, auth, audit) have not run: the run is not complete
            final = await status(c, admin)
            assert final.state is kv.RewrapState.running
            assert "scheduling" in final.services_done and "chat" in final.services_done
            await check_scheduling(c, replacement.db, booked, written, set(rotated.added))
            await check_chat(c, chat.db, sent, set(rotated.added))
            tables = {t.table: t for t in final.tables}
            appointments_table = tables["appointments"]
            assert appointments_table.pass_number >= 2  # the late writes took another pass
            assert appointments_table.rows_rewrapped <= APPOINTMENTS + len(late_ids)
            assert appointments_table.rows_failed == 0
            assert set(appointments_table.usage) <= set(rotated.added)
            # a fresh scan (asked by the keyvault only) agrees
            for method in (SCHEDULING_KEY_USAGE, CHAT_KEY_USAGE):
                scan = await c.keyvault.rpc.call(method, kv.KeyUsageRequest())
                used = {k for usage in scan.tables.values() for k in usage}
                assert used <= set(rotated.added)
            await c.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), admin)


async def check_scheduling(
    c: Clinic,
    database: db.Database,
    booked: dict[str, dict[str, Any]],
    written: dict[str, str],
    active: set[int],
) -> None:
    rows = await database.fetchall(
        "SELECT appointment_id, patient_id, physician_id, reason_enc, cancel_reason_enc "
        "FROM appointments"
    )
    assert len(rows) == len(booked)
    vault = vault_of(c.keyvault)
    seen: set[tuple[int, bytes]] = set()
    requests = []
    for key, patient, physician, reason, cancel in rows:
        fields = {"reason": reason, **({"cancel_reason": cancel} if cancel else {})}
        for value in fields.values():
            version, key_id, nonce = header(value)
            assert version == ciphers.FIELD_VERSION and key_id in active  # none left behind
            assert (key_id, nonce) not in seen  # no (key, nonce) pair twice
            seen.add((key_id, nonce))
        requests.append(
            kv.FieldRow(
                table="appointments", row_id=key, fields=fields, binding=binding(patient, physician)
            )
        )
    plain, failed = await vault.decrypt(requests)
    assert failed == []  # every row decrypts, in its own context
    for request, text in zip(requests, plain, strict=True):
        expected = written.get(request.row_id, booked[request.row_id]["reason"])
        assert text["reason"] == expected  # a user's change stands
        if booked[request.row_id]["cancel"]:
            assert text["cancel_reason"] == booked[request.row_id]["cancel"]


async def check_chat(
    c: Clinic, database: db.Database, sent: dict[int, str], active: set[int]
) -> None:
    rows = await database.fetchall(
        "SELECT message_id, message_uuid, conversation_id, text_enc FROM messages"
    )
    requests = []
    for _, message_uuid, conversation, text in rows:
        assert header(text)[1] in active
        requests.append(
            kv.FieldRow(
                table="messages",
                row_id=message_uuid,
                fields={"text": text},
                binding={"conversation": conversation},
            )
        )
    plain, failed = await vault_of(c.keyvault).decrypt(requests)
    assert failed == []
    assert sorted(p["text"] for p in plain) == sorted(sent.values())
    (name,) = await database.fetchall("SELECT name_enc FROM conversations")
    assert header(name[0])[1] in active


def test_sql_is_made_from_the_declaration() -> None:
    table = Table(
        "encounter_versions",
        pk=("encounter_id", "version"),
        row_id="{encounter_id}.v{version}",
        encrypted=("note_enc",),
        binding={"patient": "patient_id"},
    )
    table.check("records")
    assert table.columns == ["encounter_id", "version", "patient_id", "note_enc"]
    assert "WHERE (`encounter_id` > %s) OR (`encounter_id` = %s AND `version` > %s)" in (
        table.select_after(True)
    )
    assert table.after_args(["e1", 3]) == ["e1", "e1", 3]
    assert table.context_row_id({"encounter_id": "e1", "version": 3}) == "e1.v3"
    assert table.lock(2).count("`encounter_id` = %s AND `version` = %s") == 2
    assert table.lock(2).endswith("FOR UPDATE")
    request = table.request(
        {"encounter_id": "e1", "version": 3, "patient_id": "p", "note_enc": "AQ=="}, False
    )
    assert request.row_id == "e1.v3" and request.binding == {"patient": "p"}
    assert request.fields == {"note": "AQ=="} and request.mac is None


def test_a_declaration_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="not a keyvault table of"):
        Table("appointments", pk=("appointment_id",)).check("records")
    with pytest.raises(ValueError, match="row_id"):
        Table("encounter_versions", pk=("a", "b")).check("records")
    with pytest.raises(ValueError, match="in the MAC"):
        Table(
            "prescriptions",
            pk=("prescription_id",),
            encrypted=("medication_enc",),
            mac=Mac("mac", (Col("status"),)),
        ).check("records")
    with pytest.raises(ValueError, match="plain SQL name"):
        Table("patients; DROP TABLE x", pk=("patient_id",)).check("records")
    with pytest.raises(ValueError, match="blind indexes"):
        Table("patients", pk=("patient_id",), indexes={"given_name": "x"}).check("records")


def test_mac_columns_take_the_services_canonical_form() -> None:
    table = Table(
        "allergy_lists",
        pk=("patient_id",),
        encrypted={"allergies_enc": "allergies"},
        binding={"patient": "patient_id"},
        mac=Mac("mac", (Col("allergies_enc"), Col("version", "str"), Col("updated_at", "iso"))),
    )
    row = {
        "patient_id": "p1",
        "allergies_enc": "AQ==",
        "version": 4,
        "updated_at": datetime(2030, 1, 2, 3, 4, 5, 6),
        "mac": "tag",
    }
    request = table.request(row, False)
    assert request.mac is not None
    assert request.mac.row.pk == "p1"
    assert request.mac.row.columns == [
        ("allergies_enc", "AQ=="),
        ("version", "4"),
        ("updated_at", datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC).isoformat()),
    ]
    assert request.mac.binding_columns == {"patient": kv.MAC_PK}
    assert request.mac.columns == {"allergies": "allergies_enc"}
    assert json.loads(request.model_dump_json())["mac"]["tag"] == "tag"
