"""What the modules of records' store share: times in and out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def opt_aware(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
