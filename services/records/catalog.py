"""The medicine catalog: administrators add, edit and retire entries; physicians search it
by prefix of name or active ingredient, and by type, fast enough for typing ahead.

Prescriptions copy an entry's details at signing time (`prescribing.check_catalog`),
so a later edit of the catalog never changes a signed prescription; a retired medicine
cannot be newly prescribed. Every entry's active ingredient must be in the drug vocabulary
(`knowledge`): its ingredients and classes are what the prescribing check works on, and
are shown with the entry.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import records as rec
from contracts.audit import AuditAction, AuditOutcome, AuditType
from mesh import audit, db
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from mesh.db import Sql
from mesh.errors import Conflict, InvalidRequest, NotFound
from mesh.logging import get_logger
from mesh.runtime import Runtime
from services.records import knowledge
from services.records.knowledge import Knowledge

log = get_logger("records.catalog")

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


def described(medicine: rec.Medicine, vocabulary: Knowledge) -> rec.Medicine:
    """The entry with its ingredients and their classes, as the vocabulary knows them."""
    drug = vocabulary.drug(medicine.details.active_ingredient)
    return medicine.model_copy(
        update={"ingredients": sorted(drug.ingredients), "classes": sorted(drug.classes)}
    )


def _check_ingredient(details: rec.MedicineDetails, vocabulary: Knowledge) -> None:
    drug = vocabulary.drug(details.active_ingredient)
    if drug.unresolved or not drug.ingredients:
        unknown = ", ".join(drug.unresolved) or details.active_ingredient
        msg = (
            f"{unknown} is not in the drug vocabulary, so allergies and interactions could "
            "not be checked: name the active ingredients as the vocabulary does (several "
            "separated by /), or add them to the clinic's drug vocabulary first"
        )
        raise InvalidRequest(
            msg,
            details=[
                {"loc": ["details", "active_ingredient"], "msg": msg, "type": "unknown_ingredient"}
            ],
        )


async def ingredient_texts(executor: Any, medicine_ids: set[str]) -> dict[str, str]:
    """The active-ingredient text of catalog entries (retired ones too), by id."""
    if not medicine_ids:
        return {}
    ids = sorted(medicine_ids)
    marks = ", ".join(["%s"] * len(ids))
    sql = f"SELECT medicine_id, active_ingredient FROM medicines WHERE medicine_id IN ({marks})"  # noqa: S608
    return {str(r[0]): str(r[1]) for r in await db.fetchall(executor, sql, ids)}


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
    conn: Sql, medicine_id: str, details: rec.MedicineDetails, active: bool, *, new: bool
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


SAMPLE = Path(__file__).with_name("catalog_seed.json")


async def load_sample_when_empty(runtime: Runtime) -> int:
    """Development mode's first run: the sample catalog (SAMPLE DATA, not clinical advice),
    so a new install can prescribe at once. Returns how many entries it added (0: the
    catalog has entries, or this is not development mode)."""
    if not runtime.settings.dev_mode or runtime.db is None:
        return 0
    entries = [
        rec.MedicineDetails.model_validate(m)
        for m in json.loads(SAMPLE.read_text(encoding="utf-8"))["medicines"]
    ]
    try:
        async for attempt in runtime.db.transactions():
            async with attempt as conn:
                found = await db.fetchone(conn, "SELECT COUNT(*) FROM medicines FOR UPDATE")
                if found is None or int(found[0]) > 0:
                    return 0
                for details in entries:
                    await _store(conn, str(uuid.uuid4()), details, True, new=True)
                await audit.record(
                    runtime,
                    audit.make_event(
                        rec.SERVICE,
                        AuditType.catalog_sample_loaded,
                        AuditAction.create,
                        AuditOutcome.success,
                        entity_type=rec.MEDICINE_TABLE,
                        detail=f"{len(entries)} sample medicines (development mode, first run)",
                    ),
                    conn=conn,
                )
    except Conflict:
        return 0  # another replica loaded it meanwhile
    log.info("catalog.sample_loaded", medicines=len(entries))
    return len(entries)


async def add_medicine(req: rec.AddMedicineRequest, ctx: CallContext) -> rec.Medicine:
    medicine_id = str(uuid.uuid4())
    async with audited(
        ctx, AuditType.catalog_add, AuditAction.create, rec.MEDICINE_TABLE, entity_id=medicine_id
    ):
        vocabulary = knowledge.of(ctx)
        _check_ingredient(req.details, vocabulary)
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
        return described(medicine, vocabulary)


async def update_medicine(req: rec.UpdateMedicineRequest, ctx: CallContext) -> rec.Medicine:
    async with audited(
        ctx,
        AuditType.catalog_update,
        AuditAction.update,
        rec.MEDICINE_TABLE,
        entity_id=req.medicine_id,
    ):
        vocabulary = knowledge.of(ctx)
        _check_ingredient(req.details, vocabulary)
        current = await fetch(ctx.tx, req.medicine_id, lock=True)
        if current is None:
            raise NotFound("no such medicine in the catalog")
        await _store(ctx.tx, req.medicine_id, req.details, current.active, new=False)
        medicine = await fetch(ctx.tx, req.medicine_id)
        assert medicine is not None
        return described(medicine, vocabulary)


async def retire_medicine(req: rec.RetireMedicineRequest, ctx: CallContext) -> rec.Medicine:
    async with audited(
        ctx,
        AuditType.catalog_retire,
        AuditAction.update,
        rec.MEDICINE_TABLE,
        entity_id=req.medicine_id,
    ):
        current = await fetch(ctx.tx, req.medicine_id, lock=True)
        if current is None:
            raise NotFound("no such medicine in the catalog")
        await _store(ctx.tx, req.medicine_id, current.details, False, new=False)
        medicine = await fetch(ctx.tx, req.medicine_id)
        assert medicine is not None
        return described(medicine, knowledge.of(ctx))


async def get_medicine(req: rec.GetMedicineRequest, ctx: CallContext) -> rec.Medicine:
    medicine = await fetch(runtime_of(ctx).db, req.medicine_id)
    if medicine is None:
        raise NotFound("no such medicine in the catalog")
    return described(medicine, knowledge.of(ctx))


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
    rows = await db.fetchall(runtime_of(ctx).database, sql, (*args, req.limit))
    vocabulary = knowledge.of(ctx)
    return rec.MedicineList(medicines=[described(_medicine(r), vocabulary) for r in rows])
