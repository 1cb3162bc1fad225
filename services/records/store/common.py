"""What the modules of records' store share: times in and out, lock conflicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncmy.errors import OperationalError

from mesh.db import RETRYABLE


def is_lock_conflict(exc: BaseException) -> bool:
    """MariaDB chose this transaction as a deadlock victim, or gave up waiting for a lock."""
    return isinstance(exc, OperationalError) and bool(exc.args) and exc.args[0] in RETRYABLE


def naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def opt_aware(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
