"""Each patient's own allergy list: recorded, changed, marked inactive (never deleted), with
who and when; what the chart's banner and the prescribing check read.

The list is one MAC'd ciphertext per patient (`allergy_lists`). A patient recorded before
lists existed has no row: the first signed request that needs the list builds it from
the allergies on every encounter (latest entry per substance wins) in the same DECRYPT
call as the rest of its rows, and stores it. Allergies recorded on an encounter are merged
into the list by the encounter's write. Writes of a list hold the patient's row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from contracts import keyvault as kv
from contracts import records as rec
from contracts.audit import AuditAction, AuditOutcome, AuditType
from mesh import audit, auditing, keyvault
from mesh.context import CallContext, runtime_of
from mesh.db import Sql
from mesh.errors import Conflict, IntegrityError, InvalidRequest, NotFound, RpcError, invalid_field
from mesh.keyvault import Batch, Decrypted
from mesh.runtime import Runtime
from services.records import access, codec, integrity, knowledge, known, store
from services.records.access import principal_of
from services.records.store import AllergyListRow, AllergyRow

ENTITY = "allergy"
TABLE = rec.ALLERGIES_TABLE
COLUMN = rec.ALLERGY_COLUMN
_MIGRATED_IDS = uuid.UUID("6f1d8a52-3c1e-4f5b-9a57-0d3b2e51c8a4")
"""Namespace of the ids given to allergies found on encounters: the same patient and
substance get the same id in every build of the list (a check and the prescription after
it name the same allergy even if the list was not stored in between)."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Source:
    """Where a patient's allergy list comes from in one request: its row, or (none yet)
    the allergies of every encounter. `add_to` puts what to decrypt into a batch."""

    patient_id: str
    row: AllergyListRow | None
    encounters: list[AllergyRow]
    first: int = 0
    mac: int = -1

    def add_to(self, batch: Batch) -> None:
        self.first = len(batch.rows)
        if self.row is not None:
            batch.add(
                TABLE, self.patient_id, {COLUMN: self.row.allergies_enc}, patient=self.patient_id
            )
            self.mac = batch.check(integrity.allergy_list_mac_row(self.row), self.row.mac)
            return
        for encounter in self.encounters:
            batch.add(
                rec.ENCOUNTERS_TABLE,
                encounter.row_id,
                {COLUMN: encounter.allergies_enc},
                patient=self.patient_id,
            )


@dataclass
class Loaded:
    """A patient's allergy list as decrypted; `built` when it was built from encounters in
    this request (not stored yet; stored, it is version 1)."""

    entries: list[rec.AllergyEntry]
    version: int
    built: bool

    @property
    def active(self) -> list[rec.AllergyEntry]:
        return [e for e in self.entries if e.status is rec.AllergyStatus.active]


BUILD_LIMIT = kv.MAX_ROWS - 500
"""Encounters a list can be built from in one DECRYPT (with room for the request's other
rows); a patient with more is refused clearly, never shown a partial list."""


async def source(target: object, patient_id: str) -> Source:
    row = await store.get_allergy_list(target, patient_id)
    encounters = [] if row is not None else await store.encounter_allergies(target, patient_id)
    if len(encounters) > BUILD_LIMIT:
        raise Conflict(
            f"this patient's allergy list has yet to be built from {len(encounters)} "
            f"encounters, more than the {BUILD_LIMIT} Medihaven reads at once; their "
            "allergies cannot be shown or checked: contact your Medihaven support",
            details={"patient_id": patient_id},
        )
    return Source(patient_id, row, encounters)


def _entry(
    allergy: rec.Allergy,
    allergy_id: str,
    by: str,
    at: datetime,
    encounter_id: str | None = None,
    observed_at: datetime | None = None,
) -> rec.AllergyEntry:
    return rec.AllergyEntry(
        **allergy.model_dump(),
        allergy_id=allergy_id,
        recorded_by=by,
        recorded_at=at,
        updated_by=by,
        updated_at=at,
        source_encounter_id=encounter_id,
        observed_at=observed_at or at,
    )


def _built(
    patient_id: str, encounters: Sequence[AllergyRow], plain: Decrypted, first: int
) -> list[rec.AllergyEntry]:
    """The list from every encounter's allergies, newest encounter first: per substance,
    the latest entry (whatever its status)."""
    latest: dict[str, rec.AllergyEntry] = {}
    for offset, encounter in enumerate(encounters, start=first):
        for allergy in codec.allergies(plain.rows[offset][COLUMN]):
            if allergy.key in latest:
                continue
            allergy_id = str(uuid.uuid5(_MIGRATED_IDS, f"{patient_id}|{allergy.key}"))
            latest[allergy.key] = _entry(
                allergy,
                allergy_id,
                encounter.recorded_by,
                encounter.recorded_at,
                encounter.encounter_id,
                encounter.occurred_at,
            )
    return sorted(latest.values(), key=lambda e: e.substance.casefold())


async def _rejected(runtime: Runtime, patient_id: str, why: str) -> RpcError:
    await integrity.rejected(runtime, TABLE, patient_id, patient_id, why)
    return IntegrityError(
        "this patient's allergy list fails its integrity check (edited outside Medihaven): "
        "review the allergies with the patient before prescribing",
        details={"patient_id": patient_id},
    )


async def read(ctx: CallContext, src: Source, plain: Decrypted) -> Loaded:
    """The list out of a decrypted batch `src` was added to; a list that fails its MAC or
    does not decrypt is an integrity error (never an empty list)."""
    runtime = runtime_of(ctx)
    if src.row is not None:
        if not plain.mac_valid[src.mac]:
            raise await _rejected(runtime, src.patient_id, "fails its MAC")
        if src.first in plain.failed:
            raise await _rejected(runtime, src.patient_id, "does not decrypt")
        entries = codec.allergy_entries(plain.rows[src.first][COLUMN])
        return Loaded(entries, src.row.version, built=False)
    count = len(src.encounters)
    if any(i in plain.failed for i in range(src.first, src.first + count)):
        raise IntegrityError(
            "an encounter of this patient does not decrypt (edited or moved outside Medihaven)",
            details={"patient_id": src.patient_id},
        )
    return Loaded(_built(src.patient_id, src.encounters, plain, src.first), 1, built=True)


def list_fields(entries: list[rec.AllergyEntry]) -> dict[str, str | None]:
    return {COLUMN: codec.allergy_list_text(entries)}


def add_list(batch: Batch, patient_id: str, entries: list[rec.AllergyEntry]) -> int:
    """Put a list to encrypt into an ENCRYPT batch (with the request's other rows)."""
    return batch.add(TABLE, patient_id, list_fields(entries), patient=patient_id)


def list_row(patient_id: str, ciphertext: str, version: int, by: str) -> AllergyListRow:
    """A list's row as it will be stored, before its MAC (`integrity.allergy_list_mac_row`)."""
    return AllergyListRow(patient_id, ciphertext, version, by, _now(), "")


async def store_list(runtime: Runtime, conn: Sql, row: AllergyListRow) -> None:
    """MAC and store a list row (see `list_row`)."""
    (tag,) = await keyvault.mac(runtime, [integrity.allergy_list_mac_row(row)])
    await store.put_allergy_list(conn, replace(row, mac=tag))


async def save(
    ctx: CallContext, patient_id: str, entries: list[rec.AllergyEntry], version: int
) -> None:
    """Encrypt, MAC and store a list in the request's transaction."""
    runtime = runtime_of(ctx)
    batch = Batch()
    add_list(batch, patient_id, entries)
    (cipher,) = await keyvault.encrypt(runtime, batch)
    row = list_row(patient_id, cipher[COLUMN], version, principal_of(ctx).account_id)
    await store_list(runtime, ctx.tx, row)


async def keep_built(ctx: CallContext, patient_id: str, loaded: Loaded) -> None:
    """A read built the list from the encounters: store it (its own transaction), so the
    next read need not. Someone else storing it first is fine; a failure only means the
    next request builds it again."""
    if not loaded.built:
        return
    runtime = runtime_of(ctx)
    batch = Batch()
    add_list(batch, patient_id, loaded.entries)
    (cipher,) = await keyvault.encrypt(runtime, batch)
    assert runtime.db is not None
    async for attempt in runtime.db.transactions():
        async with attempt as conn:
            if not await store.lock_patient(conn, patient_id):
                return
            if await store.get_allergy_list(conn, patient_id) is not None:
                return
            row = list_row(patient_id, cipher[COLUMN], 1, principal_of(ctx).account_id)
            await store_list(runtime, conn, row)
            await audit.record(
                runtime,
                audit.make_event(
                    rec.SERVICE,
                    AuditType.allergy_list_built,
                    AuditAction.create,
                    AuditOutcome.success,
                    patient_id=patient_id,
                    entity_type=TABLE,
                    entity_id=patient_id,
                    detail=f"{len(loaded.entries)} allergies from the encounters",
                ),
                conn=conn,
            )


def check_codes(
    allergies: Sequence[rec.Allergy], ctx: CallContext, loc: Sequence[str | int]
) -> None:
    """Every chosen vocabulary code exists (free text needs none); `loc` names the list of
    allergies in the request, or the one allergy."""
    vocabulary = knowledge.of(ctx)
    many = bool(loc) and loc[-1] == "allergies"
    for index, allergy in enumerate(allergies):
        if allergy.code is not None and not vocabulary.known(allergy.code):
            raise invalid_field(
                [*loc, index, "code"] if many else [*loc, "code"],
                f"{allergy.code} is not in the drug vocabulary: choose a substance from the "
                "search, or write the substance as free text",
                "unknown_code",
            )


def content_of(entry: rec.AllergyEntry) -> rec.Allergy:
    """What was recorded, without who and when."""
    return rec.Allergy(**entry.model_dump(include=set(rec.Allergy.model_fields)))


def merge(
    entries: list[rec.AllergyEntry],
    recorded: Sequence[rec.Allergy],
    by: str,
    encounter_id: str,
    occurred_at: datetime,
) -> list[rec.AllergyEntry] | None:
    """The list with an encounter's allergies merged in: a new substance is added; a listed
    one takes the encounter's details if they differ and the encounter occurred after what
    the entry says was observed. None: nothing changed."""
    merged = list(entries)
    changed = False
    now = _now()
    for allergy in recorded:
        at = next((i for i, e in enumerate(merged) if e.key == allergy.key), None)
        if at is None:
            merged.append(_entry(allergy, str(uuid.uuid4()), by, now, encounter_id, occurred_at))
            changed = True
            continue
        current = merged[at]
        if content_of(current) != allergy and occurred_at >= current.observed_at:
            merged[at] = current.model_copy(
                update={
                    **allergy.model_dump(),
                    "updated_by": by,
                    "updated_at": now,
                    "source_encounter_id": encounter_id,
                    "observed_at": occurred_at,
                }
            )
            changed = True
    return sorted(merged, key=lambda e: e.substance.casefold()) if changed else None


# --------------------------------------------------------------------------- handlers


async def locked_list(ctx: CallContext, patient_id: str) -> Loaded:
    """The patient's list inside a write: the patient's row locked, the list decrypted."""
    await known.lock_patient(ctx.tx, patient_id)
    src = await source(ctx.tx, patient_id)
    batch = Batch()
    src.add_to(batch)
    return await read(ctx, src, await keyvault.decrypt(runtime_of(ctx), batch))


async def list_allergies(req: rec.ListAllergiesRequest, ctx: CallContext) -> rec.AllergyList:
    database = runtime_of(ctx).db
    async with access.audited_patient(
        ctx, AuditType.allergy_list, AuditAction.read, ENTITY, req.patient_id
    ) as subject:
        await known.require_patient(database, req.patient_id)
        src = await source(database, req.patient_id)
        batch = Batch()
        src.add_to(batch)
        loaded = await read(ctx, src, await keyvault.decrypt(runtime_of(ctx), batch))
        await auditing.read(ctx, subject, [req.patient_id])
    await keep_built(ctx, req.patient_id, loaded)
    shown = loaded.entries if req.include_inactive else loaded.active
    return rec.AllergyList(patient_id=req.patient_id, allergies=shown, version=loaded.version)


async def record_allergy(req: rec.RecordAllergyRequest, ctx: CallContext) -> rec.AllergyWritten:
    me = principal_of(ctx)
    async with access.audited_patient(
        ctx, AuditType.allergy_record, AuditAction.create, ENTITY, req.patient_id
    ) as subject:
        check_codes([req.allergy], ctx, ("allergy",))
        loaded = await locked_list(ctx, req.patient_id)
        listed = next((e for e in loaded.entries if e.key == req.allergy.key), None)
        if listed is not None:
            raise Conflict(
                f"{listed.substance} is already on the allergy list ({listed.status.value}): "
                "change that entry instead",
                details={"allergy_id": listed.allergy_id},
            )
        allergy_id = str(uuid.uuid4())
        entries = sorted(
            [*loaded.entries, _entry(req.allergy, allergy_id, me.account_id, _now())],
            key=lambda e: e.substance.casefold(),
        )
        _bounded(entries)
        version = loaded.version + 1
        await save(ctx, req.patient_id, entries, version)
        subject.entity_id = allergy_id
        await auditing.written(ctx, subject, f"list version {version}")
    return rec.AllergyWritten(patient_id=req.patient_id, allergy_id=allergy_id, version=version)


async def change_allergy(req: rec.ChangeAllergyRequest, ctx: CallContext) -> rec.AllergyWritten:
    me = principal_of(ctx)
    async with access.audited_patient(
        ctx,
        AuditType.allergy_change,
        AuditAction.update,
        ENTITY,
        req.patient_id,
        entity_id=req.allergy_id,
    ) as subject:
        check_codes([req.allergy], ctx, ("allergy",))
        loaded = await locked_list(ctx, req.patient_id)
        if req.expected_version != loaded.version:
            raise Conflict(
                "the allergy list has changed since you read it: read it again",
                details={"version": loaded.version, "expected_version": req.expected_version},
            )
        at = next((i for i, e in enumerate(loaded.entries) if e.allergy_id == req.allergy_id), None)
        if at is None:
            raise NotFound(
                "no such allergy on this patient's list", details={"allergy_id": req.allergy_id}
            )
        clash = next(
            (
                e
                for e in loaded.entries
                if e.key == req.allergy.key and e.allergy_id != req.allergy_id
            ),
            None,
        )
        if clash is not None:
            raise Conflict(
                f"{clash.substance} is already on the allergy list: change that entry instead",
                details={"allergy_id": clash.allergy_id},
            )
        entries = list(loaded.entries)
        now = _now()
        entries[at] = entries[at].model_copy(
            update={
                **req.allergy.model_dump(),
                "updated_by": me.account_id,
                "updated_at": now,
                "observed_at": now,
            }
        )
        version = loaded.version + 1
        await save(ctx, req.patient_id, entries, version)
        await auditing.written(ctx, subject, f"{req.allergy.status.value}; list version {version}")
    return rec.AllergyWritten(patient_id=req.patient_id, allergy_id=req.allergy_id, version=version)


def _bounded(entries: list[rec.AllergyEntry]) -> None:
    if len(entries) > rec.MAX_LIST_ALLERGIES:
        raise InvalidRequest(
            f"an allergy list holds at most {rec.MAX_LIST_ALLERGIES} entries: mark old ones "
            "resolved or refuted and change them instead of adding more"
        )
