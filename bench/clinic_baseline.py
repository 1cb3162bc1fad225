"""Baseline of the clinic benchmark: an unsigned, unencrypted FastAPI + MariaDB read of the
same kind of data (a patient's demographics), with nothing of Medihaven in the path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from mesh.db import Database
from mesh.settings import get_settings

ROWS = 50


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    from mesh.db import ensure_database

    name = settings.database("plainbaseline")
    await ensure_database(settings, name)
    database = await Database.connect(settings, name)
    await database.execute(
        "CREATE TABLE IF NOT EXISTS plain_patients (id INT PRIMARY KEY, given_name VARCHAR(100), "
        "family_name VARCHAR(100), date_of_birth DATE, phone VARCHAR(40))"
    )
    for i in range(ROWS):
        await database.execute(
            "REPLACE INTO plain_patients VALUES (%s, %s, %s, '1980-01-01', '+44 20 7946 0000')",
            (i, f"Given{i}", f"Family{i}"),
        )
    app.state.db = database
    yield
    await database.close()


app = FastAPI(lifespan=lifespan)


@app.get("/plain/patients/{patient}")
async def patient(patient: int) -> dict[str, Any]:
    row = await app.state.db.fetchone(
        "SELECT id, given_name, family_name, date_of_birth, phone FROM plain_patients "
        "WHERE id = %s",
        (patient % ROWS,),
    )
    return {
        "id": row[0],
        "given_name": row[1],
        "family_name": row[2],
        "date_of_birth": str(row[3]),
        "phone": row[4],
    }


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=get_settings().http_port or 8901, log_config=None)
