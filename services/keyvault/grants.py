"""What a signed operation lets the keyvault do, checked against the request it serves.

The runtime has already verified the user's proof and rebuilt the operation it was made
for (`ctx.operation`). Here the keyvault holds a DECRYPT or BLIND_INDEX call to that
operation's `Grant` (`contracts.grants`): tables, the patient (physician, conversation)
each row is bound to, row ids, how many rows, which columns come back, and that a
search returns only rows matching the signed terms. Every refusal names what was asked
beyond the grant; nothing here trusts a value the calling service chose.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel

from contracts import keyvault as kv
from contracts.grants import BlindIndex, Decrypt, Match
from mesh.errors import BadRequest, Forbidden, RpcError
from mesh.proofs import Operation
from services.keyvault import ciphers


def request_value(request: BaseModel, path: str) -> str | None:
    """The signed request's value at a dotted path, as text (dates in ISO form)."""
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def request_values(request: BaseModel, path: str) -> frozenset[str]:
    """The signed request's list at a dotted path, as a set of texts (empty if absent)."""
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return frozenset()
    return frozenset(str(v) for v in value) if isinstance(value, list | tuple) else frozenset()


def _refuse(operation: Operation, what: str) -> RpcError:
    return Forbidden(
        f"a signed {operation.method.route_text} request does not let the keyvault {what}",
        details={"operation": operation.method.name},
    )


def _signer_may(operation: Operation) -> None:
    """The signer's role may perform the signed operation at all: its own service would
    refuse it, so it lets the keyvault do nothing either (a taken-over service holding a
    receptionist's signed request for a physicians-only read gets no plaintext)."""
    roles, principal = operation.method.roles, operation.principal
    if roles is not None and (principal is None or principal.role not in roles):
        role = principal.role.value if principal else "unregistered"
        raise _refuse(operation, f"serve it for a signer whose role is {role}")


def owned(caller: str | None, tables: Sequence[str]) -> None:
    """Each table belongs to the calling service (no oracles for anyone else)."""
    for table in tables:
        if kv.TABLE_OWNERS.get(table) != caller:
            raise Forbidden(
                f"the keyvault serves the {table!r} table only to its own service",
                details={"table": table, "caller": caller},
            )


@dataclass
class DecryptPlan:
    """How one DECRYPT call is served: the checks passed, what to do with the plaintext."""

    grant: Decrypt
    operation: Operation
    patients: set[str] = field(default_factory=set)
    """The patients the rows belong to (for the care check)."""

    def finish(self, rows: list[dict[str, str]], failed: list[int]) -> list[dict[str, str]]:
        """Drop rows that do not match a signed search, and columns beyond the grant."""
        out: list[dict[str, str]] = []
        for index, plain in enumerate(rows):
            if index in failed:
                out.append({})
                continue
            if self.grant.match is not None and not _matches(
                self.grant.match, self.operation.request, plain
            ):
                out.append({})
                continue
            if self.grant.columns is not None:
                plain = {k: v for k, v in plain.items() if k in self.grant.columns}
            out.append(plain)
        return out


def _limit(grant: Decrypt, request: BaseModel) -> int | None:
    if grant.max_rows is None:
        return None
    if isinstance(grant.max_rows, int):
        return grant.max_rows
    value = request_value(request, grant.max_rows)
    return int(value) if value is not None else None


def _match_columns(match: Match) -> set[str]:
    return {column for _, column, _ in match.where}


def plan_decrypt(
    operation: Operation, caller: str | None, rows: Sequence[kv.FieldRow]
) -> DecryptPlan:
    grant = operation.method.grant.decrypt if operation.method.grant else None
    if grant is None:
        raise _refuse(operation, "decrypt anything")
    _signer_may(operation)
    owned(caller, sorted({r.table for r in rows}))
    request = operation.request
    limit = _limit(grant, request)
    if limit is not None and len(rows) > limit:
        raise _refuse(operation, f"decrypt more than {limit} rows")
    bound = {
        "patient": request_value(request, grant.patient) if grant.patient else None,
        "physician": request_value(request, grant.physician) if grant.physician else None,
        "conversation": (
            request_value(request, grant.conversation) if grant.conversation else None
        ),
    }
    row_id = request_value(request, grant.row_id) if grant.row_id else None
    listed = request_values(request, grant.patient_in) if grant.patient_in else None
    allowed_columns = grant.columns
    if allowed_columns is not None and grant.match is not None:
        allowed_columns = allowed_columns | _match_columns(grant.match)
    if grant.match is not None and not _terms(grant.match, request):
        raise _refuse(operation, "decrypt rows for a search without terms")
    plan = DecryptPlan(grant, operation)
    for row in rows:
        if row.table not in grant.tables:
            raise _refuse(operation, f"decrypt {row.table} rows")
        for name, value in bound.items():
            if value is not None and row.binding.get(name) != value:
                raise _refuse(operation, f"decrypt rows of another {name}")
        if listed is not None and row.binding.get("patient") not in listed:
            raise _refuse(operation, "decrypt rows of a patient the request does not name")
        if row_id is not None and row.row_id != row_id and not row.row_id.startswith(row_id + ".v"):
            raise _refuse(operation, f"decrypt a row other than {row_id}")
        if allowed_columns is not None and not set(row.fields) <= allowed_columns:
            raise _refuse(operation, "decrypt these columns")
        patient = row.binding.get("patient")
        if patient is not None:
            plan.patients.add(patient)
    if grant.one_patient and len(plan.patients) > 1:
        raise _refuse(operation, "decrypt rows of several patients")
    return plan


def _terms(match: Match, request: BaseModel) -> list[tuple[str, str]]:
    """The search terms of the signed request that have a value."""
    found = []
    for field_name, path in match.terms:
        value = request_value(request, path)
        if value is not None:
            found.append((field_name, value))
    return found


def _plain_value(match: Match, field_name: str, plain: dict[str, str]) -> str | None:
    for name, column, key in match.where:
        if name != field_name:
            continue
        text = plain.get(column)
        if text is None or key is None:
            return text
        try:
            document = json.loads(text)
        except ValueError:
            return None
        value = document.get(key) if isinstance(document, dict) else None
        return value if isinstance(value, str) else None
    return None


def _same(field_name: str, left: str | None, right: str) -> bool:
    """Equal once normalised; for a name's sound, sharing a Double Metaphone code."""
    if left is None:
        return False
    try:
        if field_name in ciphers.SOUND_FIELDS:
            return ciphers.sound_alike(left, right)
        return ciphers.normalise(field_name, left) == ciphers.normalise(field_name, right)
    except (ValueError, TypeError):
        return False


def _matches(match: Match, request: BaseModel, plain: dict[str, str]) -> bool:
    """Does a decrypted row hold exactly the signed search terms (normalised)?"""
    return all(
        _same(name, _plain_value(match, name, plain), value)
        for name, value in _terms(match, request)
    )


def check_blind_index(operation: Operation, queries: Sequence[kv.BlindIndexQuery]) -> None:
    """Every term of every query is a signed term of the operation (or a free MRN)."""
    grant: BlindIndex | None = (
        operation.method.grant.blind_index if operation.method.grant else None
    )
    if grant is None:
        raise _refuse(operation, "compute blind indexes")
    _signer_may(operation)
    signed: dict[str, str] = {}
    for name, path in grant.terms:
        value = request_value(operation.request, path)
        if value is not None:
            try:
                signed[name] = ciphers.normalise(name, value)
            except ValueError as exc:
                raise BadRequest(f"cannot index the signed {name}: {exc}") from None
    free: set[str] = set()
    for query in queries:
        for term in query.terms:
            try:
                value = ciphers.normalise(term.field, term.value)
            except (ValueError, TypeError) as exc:
                raise BadRequest(f"cannot index this value: {exc}") from None
            if signed.get(term.field) == value:
                continue
            if term.field == "mrn" and grant.free_mrns:
                free.add(value)
                if len(free) <= grant.free_mrns:
                    continue
            raise _refuse(operation, f"index a {term.field} the user did not sign")
