"""The medicine catalog (not patient data: kept in clear, searched by prefix)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Sql
from services.records.store.common import aware, naive


@dataclass(frozen=True)
class MedicineRow:
    """A catalog entry (not patient data: kept in clear)."""

    medicine_id: str
    name: str
    active_ingredient: str
    strength: str
    dosage_form: str
    route: str
    type: str
    default_instructions: str
    active: bool
    updated_at: datetime


MEDICINE_COLUMNS = (
    "medicine_id, name, active_ingredient, strength, dosage_form, route, type, "
    "default_instructions, active, updated_at"
)


def _medicine(r: Sequence[Any]) -> MedicineRow:
    return MedicineRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5]),
        str(r[6]),
        str(r[7]),
        bool(r[8]),
        aware(r[9]),
    )


async def medicine_ingredients(target: Any, medicine_ids: Sequence[str]) -> dict[str, str]:
    """The active-ingredient text of these entries (retired ones too), by id."""
    marks = ", ".join(["%s"] * len(medicine_ids))
    sql = f"SELECT medicine_id, active_ingredient FROM medicines WHERE medicine_id IN ({marks})"  # noqa: S608
    return {str(r[0]): str(r[1]) for r in await db.fetchall(target, sql, medicine_ids)}


async def get_medicine(target: Any, medicine_id: str, *, lock: bool = False) -> MedicineRow | None:
    sql = f"SELECT {MEDICINE_COLUMNS} FROM medicines WHERE medicine_id = %s"  # noqa: S608
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (medicine_id,))
    return _medicine(row) if row else None


def _medicine_values(row: MedicineRow, name_key: str, ingredient_key: str) -> tuple[Any, ...]:
    return (
        row.name,
        row.active_ingredient,
        row.strength,
        row.dosage_form,
        row.route,
        row.type,
        row.default_instructions,
        row.active,
        name_key,
        ingredient_key,
        naive(row.updated_at),
        row.medicine_id,
    )


async def insert_medicine(conn: Sql, row: MedicineRow, name_key: str, ingredient_key: str) -> None:
    """A new entry, with the case-folded keys of its name and active ingredient (raises
    the duplicate-key error when the catalog has its name, strength and form already)."""
    await db.execute(
        conn,
        "INSERT INTO medicines (name, active_ingredient, strength, dosage_form, route, type, "
        "default_instructions, active, name_key, ingredient_key, updated_at, medicine_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        _medicine_values(row, name_key, ingredient_key),
    )


async def update_medicine(conn: Sql, row: MedicineRow, name_key: str, ingredient_key: str) -> None:
    await db.execute(
        conn,
        "UPDATE medicines SET name = %s, active_ingredient = %s, strength = %s, "
        "dosage_form = %s, route = %s, type = %s, default_instructions = %s, active = %s, "
        "name_key = %s, ingredient_key = %s, updated_at = %s WHERE medicine_id = %s",
        _medicine_values(row, name_key, ingredient_key),
    )


async def lock_medicine_count(conn: Sql) -> int | None:
    """How many entries the catalog has, every row locked for this transaction."""
    row = await db.fetchone(conn, "SELECT COUNT(*) FROM medicines FOR UPDATE")
    return None if row is None else int(row[0])


async def medicine_named(conn: Sql, name: str, strength: str, dosage_form: str) -> str | None:
    """The id of the entry with this name, strength and form, if there is one."""
    row = await db.fetchone(
        conn,
        "SELECT medicine_id FROM medicines WHERE name = %s AND strength = %s AND dosage_form = %s",
        (name, strength, dosage_form),
    )
    return None if row is None else str(row[0])


def _like_prefix(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def search_medicines(
    target: Any,
    key_prefix: str | None,
    type: str | None,
    *,
    include_retired: bool,
    limit: int,
) -> list[MedicineRow]:
    """Entries whose name or active ingredient key starts with `key_prefix` (a case-folded
    key), of `type`, in name order (at least one of the two is given)."""
    where: list[str] = []
    args: list[Any] = []
    if key_prefix is not None:
        pattern = _like_prefix(key_prefix)
        where.append("(name_key LIKE %s OR ingredient_key LIKE %s)")
        args += [pattern, pattern]
    if type is not None:
        where.append("type = %s")
        args.append(type)
    if not include_retired:
        where.append("active = 1")
    condition = " AND ".join(where)
    sql = (
        f"SELECT {MEDICINE_COLUMNS} FROM medicines WHERE {condition} "  # noqa: S608
        "ORDER BY name_key, strength LIMIT %s"
    )
    return [_medicine(r) for r in await db.fetchall(target, sql, (*args, limit))]
