"""Wire contracts of the records service."""

from __future__ import annotations

SERVICE = "records"
