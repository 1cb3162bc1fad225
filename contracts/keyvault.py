"""Wire contracts of the keyvault service."""

from __future__ import annotations

SERVICE = "keyvault"
