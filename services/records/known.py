"""A patient id that names nobody gets one answer everywhere: a 404 naming the id."""

from __future__ import annotations

from typing import Any

from mesh.db import Sql
from mesh.errors import NotFound, RpcError
from services.records import store


def unknown_patient(patient_id: str) -> RpcError:
    return NotFound("unknown patient", details={"patient_id": patient_id})


async def require_patient(target: Any, patient_id: str) -> None:
    """`unknown_patient` unless the patient is on file (read through `target`)."""
    if not await store.patient_exists(target, patient_id):
        raise unknown_patient(patient_id)


async def lock_patient(tx: Sql, patient_id: str) -> None:
    """Hold the patient's row until the transaction ends (`store.lock_patient`), or
    `unknown_patient`."""
    if not await store.lock_patient(tx, patient_id):
        raise unknown_patient(patient_id)
