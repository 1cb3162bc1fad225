"""Wire contracts of the auth service."""

from __future__ import annotations

SERVICE = "auth"
