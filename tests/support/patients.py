"""The patient registration the load tests send (galera, RabbitMQ, faults), one builder,
each test naming its own patients so that no two tests' registrations meet; and how many
patients a namespace stores."""

from __future__ import annotations

import asyncio

from mesh import db
from mesh.settings import Settings


def registration(given_name: str, family_name: str, date_of_birth: str) -> dict[str, object]:
    """A `POST /api/v1/patients` body. `confirm_duplicate`: a load registers look-alike
    names on purpose, and the duplicate check must not turn them away."""
    return {
        "demographics": {
            "given_name": given_name,
            "family_name": family_name,
            "date_of_birth": date_of_birth,
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
