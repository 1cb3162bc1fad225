"""The medicine catalog: administrators add, edit and retire entries; physicians search it
by prefix of name or active ingredient, and by type, fast enough for typing ahead.

Prescriptions copy an entry's details at signing time (`prescriptions.check_catalog`),
so a later edit of the catalog never changes a signed prescription; a retired medicine
cannot be newly prescribed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts import records as rec
from contracts.audit import AuditAction
from mesh import db
from mesh.context import CallContext
from mesh.errors import Conflict, InvalidRequest, NotFound
from services.records.access import runtime_of
from services.records.auditing import audited

COLUMNS = (
    "medicine_id, name, active_ingredient, strength, dosage_form, route, type, "
    "default_instructions, active, updated_at"
)


def _medicine(row: tuple[Any, ...]) -> rec.Medicine:
    return rec.Medicine(
        medicine_id=str(row[0]),
        details=rec.MedicineDetails(
            name=row[1],
            active_ingredient=row[2],
            strength=row[3],
            dosage_form=row[4],
            route=row[5],
            type=row[6],
            default_instructions=row[7],
        ),
        active=bool(row[8]),
        updated_at=row[9].replace(tzinfo=UTC),
    )


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _like_prefix(text: str) -> str:
    escaped = _key(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def fetch(executor: Any, medicine_id: str, *, lock: bool = False) -> rec.Medicine | None:
    sql = f"SELECT {COLUMNS} FROM medicines WHERE medicine_id = %s"  # noqa: S608
    row = await db.fetchone(executor, sql + (" FOR UPDATE" if lock else ""), (medicine_id,))
    return _medicine(row) if row else None


def _values(details: rec.MedicineDetails, active: bool) -> tuple[Any, ...]:
    return (
        details.name,
        details.active_ingredient,
        details.strength,
        details.dosage_form.value,
        details.route.value,
        details.type.value,
        details.default_instructions,
        active,
        _key(details.name),
        _key(details.active_ingredient),
        datetime.now(UTC).replace(tzinfo=None),
    )


DUPLICATE = "the catalog already has this medicine (same name, strength and form)"


async def _store(
    conn: Any, medicine_id: str, details: rec.MedicineDetails, active: bool, *, new: bool
) -> None:
    sql = (
        "INSERT INTO medicines (name, active_ingredient, strength, dosage_form, route, type, "
        "default_instructions, active, name_key, ingredient_key, updated_at, medicine_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        if new
        else "UPDATE medicines SET name = %s, active_ingredient = %s, strength = %s, "
        "dosage_form = %s, route = %s, type = %s, default_instructions = %s, active = %s, "
        "name_key = %s, ingredient_key = %s, updated_at = %s WHERE medicine_id = %s"
    )
    try:
        await db.execute(conn, sql, (*_values(details, active), medicine_id))
    except Exception as exc:
        if db.is_duplicate_key(exc):
            raise Conflict(DUPLICATE) from None
        raise


async def add_medicine(req: rec.AddMedicineRequest, ctx: CallContext) -> rec.Medicine:
    medicine_id = str(uuid.uuid4())
    async with audited(
        ctx, "catalog.add", AuditAction.create, rec.MEDICINE_TABLE, entity_id=medicine_id
    ):
        existing = await db.fetchone(
            ctx.tx,
            "SELECT medicine_id FROM medicines WHERE name = %s AND strength = %s "
            "AND dosage_form = %s",
            (req.details.name, req.details.strength, req.details.dosage_form.value),
        )
        if existing is not None:
            raise Conflict(DUPLICATE, details={"medicine_id": existing[0]})
        await _store(ctx.tx, medicine_id, req.details, True, new=True)
        medicine = await fetch(ctx.tx, medicine_id)
        assert medicine is not None
        return medicine


async def update_medicine(req: rec.UpdateMedicineRequest, ctx: CallContext) -> rec.Medicine:
    async with audited(
        ctx, "catalog.update", AuditAction.update, rec.MEDICINE_TABLE, entity_id=req.medicine_id
    ):
        current = await fetch(ctx.tx, req.medicine_id, lock=True)
        if current is None:
            raise NotFound("no such medicine in the catalog")
        await _store(ctx.tx, req.medicine_id, req.details, current.active, new=False)
        medicine = await fetch(ctx.tx, req.medicine_id)
        assert medicine is not None
        return medicine


async def retire_medicine(req: rec.RetireMedicineRequest, ctx: CallContext) -> rec.Medicine:
    async with audited(
        ctx, "catalog.retire", AuditAction.update, rec.MEDICINE_TABLE, entity_id=req.medicine_id
    ):
        current = await fetch(ctx.tx, req.medicine_id, lock=True)
        if current is None:
            raise NotFound("no such medicine in the catalog")
        await _store(ctx.tx, req.medicine_id, current.details, False, new=False)
        medicine = await fetch(ctx.tx, req.medicine_id)
        assert medicine is not None
        return medicine


async def get_medicine(req: rec.GetMedicineRequest, ctx: CallContext) -> rec.Medicine:
    medicine = await fetch(runtime_of(ctx).db, req.medicine_id)
    if medicine is None:
        raise NotFound("no such medicine in the catalog")
    return medicine


async def search_medicines(req: rec.SearchMedicinesRequest, ctx: CallContext) -> rec.MedicineList:
    where: list[str] = []
    args: list[Any] = []
    if req.prefix.strip():
        pattern = _like_prefix(req.prefix)
        where.append("(name_key LIKE %s OR ingredient_key LIKE %s)")
        args += [pattern, pattern]
    if req.type is not None:
        where.append("type = %s")
        args.append(req.type.value)
    if not where:
        raise InvalidRequest("give a prefix or a type to search the catalog")
    if not req.include_retired:
        where.append("active = 1")
    condition = " AND ".join(where)
    sql = f"SELECT {COLUMNS} FROM medicines WHERE {condition} ORDER BY name_key, strength LIMIT %s"  # noqa: S608
    rows = await db.fetchall(runtime_of(ctx).db, sql, (*args, req.limit))
    return rec.MedicineList(medicines=[_medicine(r) for r in rows])
