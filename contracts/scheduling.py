"""Wire contracts of the scheduling service."""

from __future__ import annotations

SERVICE = "scheduling"
