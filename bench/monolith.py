"""The plain-monolith baseline: one FastAPI + aiomysql process serving the same patient
summary as Medihaven (demographics, the 10 most recent encounters, active prescriptions,
allergies), unsigned and unencrypted, nothing of Medihaven in the path.

The benchmark seeds it (`seed`, `set_encounters`) with the very documents Medihaven's
summary returned, so the JSON answered is the same, byte for byte in size; the same
number of encounters is on file. One request is the same five queries Medihaven's
records service makes (care relationship, patient, recent encounters, active
prescriptions, the allergy list), in turn on one pooled connection, as a plain app
would; documents are stored as JSON text, parsed and returned as a dict (FastAPI
serialises it). Who asks is named in `x-account-id` (nothing checks a signature).

Its driver is aiomysql, as issue 17 defined the yardstick (its targets are ratios to this
app), although the services now use asyncmy: on asyncmy the same app served 1,717
summaries/s at c=16 where it serves 1,473/s on aiomysql (two runs minutes apart).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomysql
from fastapi import FastAPI, HTTPException, Request

from mesh.settings import Settings, get_settings

NAME = "plainmonolith"
SCHEMA = (
    "CREATE TABLE care (physician_id VARCHAR(64) NOT NULL, patient_id VARCHAR(64) NOT NULL, "
    "PRIMARY KEY (physician_id, patient_id)) ENGINE=InnoDB",
    "CREATE TABLE patients (patient_id VARCHAR(64) NOT NULL PRIMARY KEY, doc MEDIUMTEXT NOT "
    "NULL) ENGINE=InnoDB",
    "CREATE TABLE encounters (encounter_id VARCHAR(64) NOT NULL PRIMARY KEY, patient_id "
    "VARCHAR(64) NOT NULL, occurred_at DATETIME(6) NOT NULL, doc MEDIUMTEXT NOT NULL, "
    "KEY by_patient (patient_id, occurred_at)) ENGINE=InnoDB",
    "CREATE TABLE prescriptions (prescription_id VARCHAR(64) NOT NULL PRIMARY KEY, patient_id "
    "VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, doc MEDIUMTEXT NOT NULL, "
    "KEY by_patient (patient_id, status)) ENGINE=InnoDB",
    "CREATE TABLE allergies (patient_id VARCHAR(64) NOT NULL PRIMARY KEY, doc MEDIUMTEXT NOT "
    "NULL) ENGINE=InnoDB",
)


def _connect_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.db_host,
        "port": settings.db_port,
        "user": settings.db_user,
        "password": settings.db_password.get_secret_value(),
        "charset": "utf8mb4",
        "autocommit": True,
    }


async def seed(settings: Settings, physician_id: str, summary: dict[str, Any]) -> str:
    """The monolith's database, holding what Medihaven's `summary` shows: the patient, its
    encounters, active prescriptions and allergies, and the physician's care. Returns the
    patient id."""
    conn = await aiomysql.connect(**_connect_kwargs(settings))
    name = settings.database(NAME)
    patient_id = str(summary["patient"]["patient_id"])
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            await cur.execute(f"USE `{name}`")
            for statement in SCHEMA:
                await cur.execute(statement)
            await cur.execute("INSERT INTO care VALUES (%s, %s)", (physician_id, patient_id))
            await cur.execute(
                "INSERT INTO patients VALUES (%s, %s)",
                (patient_id, json.dumps(summary["patient"])),
            )
            await cur.executemany(
                "INSERT INTO prescriptions VALUES (%s, %s, 'active', %s)",
                [
                    (str(p["prescription_id"]), patient_id, json.dumps(p))
                    for p in summary["active_prescriptions"]
                ],
            )
            await cur.execute(
                "INSERT INTO allergies VALUES (%s, %s)",
                (patient_id, json.dumps(summary["allergies"])),
            )
    finally:
        conn.close()
    await set_encounters(settings, summary, len(summary["encounters"]))
    return patient_id


async def set_encounters(settings: Settings, summary: dict[str, Any], on_file: int) -> None:
    """`on_file` encounters for the patient: the shown ones (the most recent) and older
    copies of them."""
    shown = summary["encounters"]
    patient_id = str(summary["patient"]["patient_id"])
    oldest = min(_occurred(e) for e in shown)
    rows = [(str(e["encounter_id"]), _occurred(e), e) for e in shown]
    for i in range(on_file - len(shown)):
        copy = json.loads(json.dumps(shown[i % len(shown)]))
        copy["encounter_id"] = str(uuid.uuid4())
        at = oldest - timedelta(hours=i + 1)
        copy["content"]["occurred_at"] = at.isoformat()
        rows.append((copy["encounter_id"], at, copy))
    conn = await aiomysql.connect(**_connect_kwargs(settings), db=settings.database(NAME))
    try:
        async with conn.cursor() as cur:
            await cur.execute("DELETE FROM encounters WHERE patient_id = %s", (patient_id,))
            for start in range(0, len(rows), 500):
                await cur.executemany(
                    "INSERT INTO encounters VALUES (%s, %s, %s, %s)",
                    [
                        (eid, patient_id, at.astimezone(UTC).replace(tzinfo=None), json.dumps(doc))
                        for eid, at, doc in rows[start : start + 500]
                    ],
                )
    finally:
        conn.close()


def _occurred(encounter: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(encounter["content"]["occurred_at"])


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.pool = await aiomysql.create_pool(
        **_connect_kwargs(settings),
        db=settings.database(NAME),
        minsize=1,
        maxsize=settings.db_pool_size,
    )
    yield
    app.state.pool.close()
    await app.state.pool.wait_closed()


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/plain/patients/{patient_id}/summary")
async def summary(patient_id: str, request: Request, encounters: int = 10) -> dict[str, Any]:
    physician_id = request.headers.get("x-account-id", "")
    async with app.state.pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT 1 FROM care WHERE physician_id = %s AND patient_id = %s",
            (physician_id, patient_id),
        )
        if await cur.fetchone() is None:
            raise HTTPException(403, "no care relationship")
        await cur.execute("SELECT doc FROM patients WHERE patient_id = %s", (patient_id,))
        patient = await cur.fetchone()
        if patient is None:
            raise HTTPException(404, "unknown patient")
        await cur.execute(
            "SELECT doc FROM encounters WHERE patient_id = %s ORDER BY occurred_at DESC LIMIT %s",
            (patient_id, encounters),
        )
        shown = await cur.fetchall()
        await cur.execute(
            "SELECT doc FROM prescriptions WHERE patient_id = %s AND status = 'active'",
            (patient_id,),
        )
        active = await cur.fetchall()
        await cur.execute("SELECT doc FROM allergies WHERE patient_id = %s", (patient_id,))
        allergies = await cur.fetchone()
    return {
        "patient": json.loads(patient[0]),
        "encounters": [json.loads(r[0]) for r in shown],
        "active_prescriptions": [json.loads(r[0]) for r in active],
        "allergies": json.loads(allergies[0]) if allergies else [],
        "integrity_failures": [],
    }


if __name__ == "__main__":
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=settings.http_port or 8901,
        log_config=None,
        access_log=False,
    )
