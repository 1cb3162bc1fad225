"""What a user's signed request lets the keyvault do for the service that serves it.

A signature authorises one operation (an `RpcMethod` with a route), once. While serving
it, the service asks the keyvault to decrypt or to compute blind indexes, forwarding the
user's proof; the keyvault rebuilds the operation's request from that proof and allows
only what the operation's `Grant` names, for the values the user signed:

- `Decrypt`: which tables; which patient (or physician, or conversation, or one of a
  signed list of patients) every row must be bound to (the binding is part of each
  ciphertext's AAD, so a row of another patient does not decrypt under a false
  claim); which row ids; how many rows; which columns come back; and, for searches,
  that every returned row matches the signed search terms (compared on the
  normalised plaintext by the keyvault itself).
- `BlindIndex`: the terms of the signed request only (plus a few free record numbers for
  a new registration).

Each kind of keyvault call is served at most once per proof (`keyvault.decrypt`,
`keyvault.blind_index`), across every keyvault replica. Request values are named by
path (`"patient_id"`, `"demographics.family_name"`).
"""

from __future__ import annotations

from dataclasses import dataclass

BINDINGS = frozenset({"patient", "physician", "conversation"})
"""What a ciphertext may be bound to, besides its table, column and row id."""


@dataclass(frozen=True)
class Match:
    """Every returned row matches the request's search terms: (blind-index field, request
    path). Terms whose request value is empty are not part of this request's search.
    `where` says where each field's plaintext is in a row: (field, column, JSON key or
    None for a column that holds the value itself)."""

    terms: tuple[tuple[str, str], ...]
    where: tuple[tuple[str, str, str | None], ...]


@dataclass(frozen=True)
class Decrypt:
    tables: frozenset[str]
    patient: str | None = None
    """Request path naming the patient every row must be bound to."""
    physician: str | None = None
    conversation: str | None = None
    patient_in: str | None = None
    """Request path of a list of patient ids: every row is bound to one of them (a read of
    the patients a list shows, `records.patient_briefs`)."""
    row_id: str | None = None
    """Request path: every row id equals this value, or is a version of it (`<id>.v<n>`)."""
    one_patient: bool = False
    """The rows may belong to one patient only (taken from their binding, care-checked)."""
    columns: frozenset[str] | None = None
    """The only columns returned (others may be decrypted to check a `match`)."""
    match: Match | None = None
    max_rows: int | str | None = None
    """A number, or the request path of the request's own limit."""
    countersigned: bool = False
    """Served only with the proof of a kick-off (`contracts.fhirexport.KICKOFFS`) signed
    by another active administrator, which this operation approves by its digest."""


@dataclass(frozen=True)
class BlindIndex:
    terms: tuple[tuple[str, str], ...]
    """(blind-index field, request path): every term of every query must be one of these,
    with the signed value."""
    free_mrns: int = 0
    """Extra `mrn` terms with any value (the record numbers a registration may draw)."""


@dataclass(frozen=True)
class Grant:
    decrypt: Decrypt | None = None
    blind_index: BlindIndex | None = None
