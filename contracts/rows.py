"""A row to protect with a MAC: shared by the keyvault and the services that own MAC'd tables."""

from __future__ import annotations

from contracts.base import Model

MacValue = str | int | None


class MacRow(Model):
    """A row to protect: table, primary key and protected columns in a fixed order."""

    table: str
    pk: str
    columns: list[tuple[str, MacValue]]
