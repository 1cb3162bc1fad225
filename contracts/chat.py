"""Wire contracts of the chat service."""

from __future__ import annotations

SERVICE = "chat"
