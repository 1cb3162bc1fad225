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
from services.records import knowledge, store
from services.records.knowledge import Knowledge

log = get_logger("records.catalog")


def _medicine(row: store.MedicineRow) -> rec.Medicine:
    return rec.Medicine(
        medicine_id=row.medicine_id,
        details=rec.MedicineDetails.model_validate(
            {
                "name": row.name,
                "active_ingredient": row.active_ingredient,
                "strength": row.strength,
                "dosage_form": row.dosage_form,
                "route": row.route,
                "type": row.type,
                "default_instructions": row.default_instructions,
            }
        ),
        active=row.active,
        updated_at=row.updated_at,
    )


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


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
    return await store.medicine_ingredients(executor, sorted(medicine_ids))


async def fetch(executor: Any, medicine_id: str, *, lock: bool = False) -> rec.Medicine | None:
    row = await store.get_medicine(executor, medicine_id, lock=lock)
    return _medicine(row) if row else None


def _row(medicine_id: str, details: rec.MedicineDetails, active: bool) -> store.MedicineRow:
    return store.MedicineRow(
        medicine_id,
        details.name,
        details.active_ingredient,
        details.strength,
        details.dosage_form.value,
        details.route.value,
        details.type.value,
        details.default_instructions,
        active,
        datetime.now(UTC),
    )


DUPLICATE = "the catalog already has this medicine (same name, strength and form)"


async def _store(
    conn: Sql, medicine_id: str, details: rec.MedicineDetails, active: bool, *, new: bool
) -> None:
    write = store.insert_medicine if new else store.update_medicine
    try:
        row = _row(medicine_id, details, active)
        await write(conn, row, _key(details.name), _key(details.active_ingredient))
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
                found = await store.lock_medicine_count(conn)
                if found is None or found > 0:
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


async def _locked(ctx: CallContext, medicine_id: str) -> rec.Medicine:
    """The catalog entry, its row locked for this write (404 if there is none)."""
    current = await fetch(ctx.tx, medicine_id, lock=True)
    if current is None:
        raise NotFound("no such medicine in the catalog")
    return current


async def _saved(
    ctx: CallContext,
    medicine_id: str,
    details: rec.MedicineDetails,
    active: bool,
    vocabulary: Knowledge,
    *,
    new: bool,
) -> rec.Medicine:
    """Write the entry's row, then the entry as the catalog shows it."""
    await _store(ctx.tx, medicine_id, details, active, new=new)
    medicine = await fetch(ctx.tx, medicine_id)
    assert medicine is not None
    return described(medicine, vocabulary)


async def add_medicine(req: rec.AddMedicineRequest, ctx: CallContext) -> rec.Medicine:
    medicine_id = str(uuid.uuid4())
    async with audited(
        ctx, AuditType.catalog_add, AuditAction.create, rec.MEDICINE_TABLE, entity_id=medicine_id
    ):
        vocabulary = knowledge.of(ctx)
        _check_ingredient(req.details, vocabulary)
        existing = await store.medicine_named(
            ctx.tx, req.details.name, req.details.strength, req.details.dosage_form.value
        )
        if existing is not None:
            raise Conflict(DUPLICATE, details={"medicine_id": existing})
        return await _saved(ctx, medicine_id, req.details, True, vocabulary, new=True)


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
        current = await _locked(ctx, req.medicine_id)
        return await _saved(
            ctx, req.medicine_id, req.details, current.active, vocabulary, new=False
        )


async def retire_medicine(req: rec.RetireMedicineRequest, ctx: CallContext) -> rec.Medicine:
    async with audited(
        ctx,
        AuditType.catalog_retire,
        AuditAction.update,
        rec.MEDICINE_TABLE,
        entity_id=req.medicine_id,
    ):
        current = await _locked(ctx, req.medicine_id)
        return await _saved(
            ctx, req.medicine_id, current.details, False, knowledge.of(ctx), new=False
        )


async def get_medicine(req: rec.GetMedicineRequest, ctx: CallContext) -> rec.Medicine:
    medicine = await fetch(runtime_of(ctx).db, req.medicine_id)
    if medicine is None:
        raise NotFound("no such medicine in the catalog")
    return described(medicine, knowledge.of(ctx))


async def search_medicines(req: rec.SearchMedicinesRequest, ctx: CallContext) -> rec.MedicineList:
    prefix = _key(req.prefix) if req.prefix.strip() else None
    if prefix is None and req.type is None:
        raise InvalidRequest("give a prefix or a type to search the catalog")
    rows = await store.search_medicines(
        runtime_of(ctx).database,
        prefix,
        None if req.type is None else req.type.value,
        include_retired=req.include_retired,
        limit=req.limit,
    )
    vocabulary = knowledge.of(ctx)
    return rec.MedicineList(medicines=[described(_medicine(r), vocabulary) for r in rows])
