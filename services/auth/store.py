"""SQL of the auth service: staff accounts and registration tokens (with their MACs), and
attendance (shifts, webhook event ids)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from contracts import attendance as att
from contracts import auth
from contracts.auth import TOKENS_TABLE, Account, AccountStatus, TokenRow
from contracts.base import Role
from contracts.rows import MacRow
from mesh import db
from mesh.db import Database, Sql

__all__ = ["TOKENS_TABLE"]

ACCOUNT_COLUMNS = (
    "account_id, username, display_name, role, status, public_key, specialty, "
    "created_at, updated_at, mac"
)
REGISTRATION_COLUMNS = (
    "token_id, token_hash, role, expires_at, issued_by, created_at, revoked_at, used_by, "
    "used_at, mac"
)


def utc(value: datetime | None) -> datetime | None:
    """MariaDB keeps naive UTC datetimes; the wire has aware ones."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class StoredAccount:
    account: Account
    mac: str


@dataclass(frozen=True)
class StoredToken:
    token_id: str
    token_hash: str
    role: Role
    expires_at: datetime
    issued_by: str | None
    created_at: datetime
    revoked_at: datetime | None
    used_by: str | None
    used_at: datetime | None
    mac: str

    def with_(self, **changes: Any) -> StoredToken:
        return replace(self, **changes)

    @property
    def row(self) -> TokenRow:
        """The row as the keyvault sees it (every column but the MAC)."""
        return TokenRow(
            token_id=self.token_id,
            token_hash=self.token_hash,
            role=self.role,
            expires_at=self.expires_at,
            issued_by=self.issued_by,
            created_at=self.created_at,
            revoked_at=self.revoked_at,
            used_by=self.used_by,
            used_at=self.used_at,
        )

    @classmethod
    def of(cls, row: TokenRow, mac: str) -> StoredToken:
        return cls(**row.model_dump(), mac=mac)


def token_mac_row(token: StoredToken) -> MacRow:
    """The canonical MAC input of a registration-token row (every column but the MAC)."""
    return auth.token_mac_row(token.row)


def _account(row: tuple[Any, ...]) -> StoredAccount:
    created, updated = utc(row[7]), utc(row[8])
    assert created is not None and updated is not None
    return StoredAccount(
        Account(
            account_id=str(row[0]),
            username=str(row[1]),
            display_name=str(row[2]),
            role=Role(row[3]),
            status=AccountStatus(row[4]),
            public_key=str(row[5]),
            specialty=row[6],
            created_at=created,
            updated_at=updated,
        ),
        str(row[9]),
    )


def _token(row: tuple[Any, ...]) -> StoredToken:
    expires, created = utc(row[3]), utc(row[5])
    assert expires is not None and created is not None
    return StoredToken(
        token_id=str(row[0]),
        token_hash=str(row[1]),
        role=Role(row[2]),
        expires_at=expires,
        issued_by=row[4],
        created_at=created,
        revoked_at=utc(row[6]),
        used_by=row[7],
        used_at=utc(row[8]),
        mac=str(row[9]),
    )


async def get_account(executor: Database | Any, account_id: str) -> StoredAccount | None:
    sql = f"SELECT {ACCOUNT_COLUMNS} FROM staff_accounts WHERE account_id = %s"  # noqa: S608
    row = await db.fetchone(executor, sql, (account_id,))
    return _account(row) if row else None


async def lock_account(conn: Sql, account_id: str) -> StoredAccount | None:
    sql = f"SELECT {ACCOUNT_COLUMNS} FROM staff_accounts WHERE account_id = %s FOR UPDATE"  # noqa: S608
    row = await db.fetchone(conn, sql, (account_id,))
    return _account(row) if row else None


async def list_accounts(database: Database, role: Role | None) -> list[StoredAccount]:
    sql = f"SELECT {ACCOUNT_COLUMNS} FROM staff_accounts"  # noqa: S608
    args: tuple[Any, ...] = ()
    if role is not None:
        sql += " WHERE role = %s"
        args = (role.value,)
    rows = await database.fetchall(sql + " ORDER BY username", args)
    return [_account(r) for r in rows]


async def administrators(executor: Database | Any) -> list[StoredAccount]:
    sql = f"SELECT {ACCOUNT_COLUMNS} FROM staff_accounts WHERE role = 'administrator'"  # noqa: S608
    return [_account(r) for r in await db.fetchall(executor, sql, ())]


async def username_taken(conn: Sql, username: str) -> bool:
    row = await db.fetchone(conn, "SELECT 1 FROM staff_accounts WHERE username = %s", (username,))
    return row is not None


async def insert_account(conn: Sql, stored: StoredAccount) -> None:
    a = stored.account
    await db.execute(
        conn,
        f"INSERT INTO staff_accounts ({ACCOUNT_COLUMNS}) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            a.account_id,
            a.username,
            a.display_name,
            a.role.value,
            a.status.value,
            a.public_key,
            a.specialty,
            naive(a.created_at),
            naive(a.updated_at),
            stored.mac,
        ),
    )


async def update_account(conn: Sql, stored: StoredAccount) -> None:
    a = stored.account
    await db.execute(
        conn,
        "UPDATE staff_accounts SET status = %s, public_key = %s, role = %s, updated_at = %s, "
        "mac = %s WHERE account_id = %s",
        (a.status.value, a.public_key, a.role.value, naive(a.updated_at), stored.mac, a.account_id),
    )


async def insert_token(conn: Sql, token: StoredToken) -> None:
    await db.execute(
        conn,
        f"INSERT INTO registration_tokens ({REGISTRATION_COLUMNS}) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            token.token_id,
            token.token_hash,
            token.role.value,
            naive(token.expires_at),
            token.issued_by,
            naive(token.created_at),
            naive(token.revoked_at),
            token.used_by,
            naive(token.used_at),
            token.mac,
        ),
    )


async def update_token(conn: Sql, token: StoredToken) -> None:
    await db.execute(
        conn,
        "UPDATE registration_tokens SET revoked_at = %s, used_by = %s, used_at = %s, mac = %s "
        "WHERE token_id = %s",
        (naive(token.revoked_at), token.used_by, naive(token.used_at), token.mac, token.token_id),
    )


async def lock_token_by_hash(conn: Sql, token_hash: str) -> StoredToken | None:
    sql = f"SELECT {REGISTRATION_COLUMNS} FROM registration_tokens WHERE token_hash = %s FOR UPDATE"  # noqa: S608
    row = await db.fetchone(conn, sql, (token_hash,))
    return _token(row) if row else None


async def lock_token(conn: Sql, token_id: str) -> StoredToken | None:
    sql = f"SELECT {REGISTRATION_COLUMNS} FROM registration_tokens WHERE token_id = %s FOR UPDATE"  # noqa: S608
    row = await db.fetchone(conn, sql, (token_id,))
    return _token(row) if row else None


async def list_tokens(database: Database) -> list[StoredToken]:
    sql = f"SELECT {REGISTRATION_COLUMNS} FROM registration_tokens ORDER BY created_at DESC"  # noqa: S608
    return [_token(r) for r in await database.fetchall(sql)]


# ---------------------------------------------------------------------------- attendance

SHIFT_COLUMNS = "account_id, checked_in_at, checked_out_at, last_event_at, place, source"


@dataclass(frozen=True)
class Shift:
    account_id: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    last_event_at: datetime
    place: str
    source: att.Source


def _shift(row: tuple[Any, ...]) -> Shift:
    last = utc(row[3])
    assert last is not None
    return Shift(str(row[0]), utc(row[1]), utc(row[2]), last, str(row[4]), att.Source(row[5]))


async def read_shift(executor: Database | Any, account_id: str) -> Shift | None:
    sql = f"SELECT {SHIFT_COLUMNS} FROM attendance_shifts WHERE account_id = %s"  # noqa: S608
    row = await db.fetchone(executor, sql, (account_id,))
    return _shift(row) if row else None


async def lock_shift(conn: Sql, account_id: str) -> Shift | None:
    sql = f"SELECT {SHIFT_COLUMNS} FROM attendance_shifts WHERE account_id = %s FOR UPDATE"  # noqa: S608
    row = await db.fetchone(conn, sql, (account_id,))
    return _shift(row) if row else None


async def list_shifts(executor: Database | Any) -> list[Shift]:
    rows = await db.fetchall(executor, f"SELECT {SHIFT_COLUMNS} FROM attendance_shifts")  # noqa: S608
    return [_shift(r) for r in rows]


def _shift_values(shift: Shift, updated_at: datetime) -> tuple[Any, ...]:
    return (
        naive(shift.checked_in_at),
        naive(shift.checked_out_at),
        naive(shift.last_event_at),
        shift.place,
        shift.source.value,
        naive(updated_at),
        shift.account_id,
    )


async def insert_shift(conn: Sql, shift: Shift, updated_at: datetime) -> None:
    await db.execute(
        conn,
        "INSERT INTO attendance_shifts (checked_in_at, checked_out_at, last_event_at, place, "
        "source, updated_at, account_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        _shift_values(shift, updated_at),
    )


async def update_shift(conn: Sql, shift: Shift, updated_at: datetime) -> None:
    await db.execute(
        conn,
        "UPDATE attendance_shifts SET checked_in_at = %s, checked_out_at = %s, "
        "last_event_at = %s, place = %s, source = %s, updated_at = %s WHERE account_id = %s",
        _shift_values(shift, updated_at),
    )


async def record_webhook_event(conn: Sql, event_id: str, received_at: datetime) -> bool:
    """Keep a webhook event's id; False: it was kept already (a replay)."""
    fresh = await db.execute(
        conn,
        "INSERT IGNORE INTO attendance_webhook_events (event_id, received_at) VALUES (%s, %s)",
        (event_id, naive(received_at)),
    )
    return bool(fresh)


async def forget_webhook_events(conn: Sql, received_before: datetime) -> None:
    """Drop (at most 100 of) the webhook event ids received before `received_before`."""
    await db.execute(
        conn,
        "DELETE FROM attendance_webhook_events WHERE received_at < %s LIMIT 100",
        (naive(received_before),),
    )
