"""Wire contracts of the keyvault: lifecycle, field encryption, MACs and blind indexes.

Binary values travel as base64 (standard alphabet) strings. Every cryptographic method
is batched: one call carries all the fields of one request, for many rows.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from contracts.base import Model, Role, RpcMethod

SERVICE = "keyvault"

ADMIN = frozenset({Role.administrator})
MAX_ROWS = 5000


class VaultState(StrEnum):
    uninitialized = "uninitialized"
    sealed = "sealed"
    unsealed = "unsealed"


class KeyPurpose(StrEnum):
    data = "data"
    integrity = "integrity"
    blind_index = "blind_index"


class KeyState(StrEnum):
    active = "active"
    retired = "retired"


class KeyInfo(Model):
    key_id: int
    purpose: KeyPurpose
    state: KeyState
    use_count: int


class StatusRequest(Model):
    pass


class StatusReply(Model):
    state: VaultState
    threshold: int | None = None
    shares: int | None = None
    progress: int = Field(default=0, description="Shares received towards unsealing.")
    transport_public_key: str = Field(
        description="X25519 public key (base64) of this replica: seal shares to it."
    )
    instance: str
    keys: list[KeyInfo] = []
    message: str | None = None


class InitRequest(Model):
    threshold: int = Field(default=3, description="K: shares needed to unseal (>= 2).")
    shares: int = Field(default=5, description="N: shares made (K <= N <= 255).")
    recipient_public_key: str = Field(
        description="X25519 public key (base64) of the operator's tool: each share comes back "
        "sealed to it, so no one in between sees a share."
    )


class InitReply(Model):
    sealed_shares: list[str] = Field(description="Each share as a sealed box (base64).")
    threshold: int
    shares: int


class UnsealRequest(Model):
    sealed_share: str = Field(
        max_length=4096, description="One share, sealed to `transport_public_key`."
    )


class SealRequest(Model):
    pass


class RotateRequest(Model):
    add: int = Field(default=16, ge=1, le=256, description="Fresh data keys to add.")
    retire_existing: bool = Field(
        default=True, description="Retire current active data keys from new encryptions."
    )


class RotateReply(Model):
    added: list[int]
    retired: list[int]


class FieldRow(Model):
    """Fields of one row. The context (table, column, row id) is bound to each ciphertext."""

    table: str = Field(min_length=1, max_length=64)
    row_id: str = Field(min_length=1, max_length=128)
    fields: dict[str, str] = Field(
        description="column -> plaintext (encrypt) or base64 ciphertext (decrypt)"
    )


class EncryptRequest(Model):
    rows: list[FieldRow] = Field(max_length=MAX_ROWS)


class EncryptReply(Model):
    rows: list[dict[str, str]] = Field(description="Per row, column -> base64 ciphertext.")


MacValue = str | int | None


class MacRow(Model):
    """A row to protect: table, primary key and protected columns in a fixed order."""

    table: str
    pk: str
    columns: list[tuple[str, MacValue]]


class DecryptRequest(Model):
    rows: list[FieldRow] = Field(max_length=MAX_ROWS)
    patient_id: str | None = Field(
        default=None, description="The patient whose data this is (for access checks and audit)."
    )
    mac_rows: list[MacRow] = Field(
        default_factory=list,
        max_length=MAX_ROWS,
        description="Rows whose MACs to check in the same call (as VERIFY_MAC does), so a "
        "read that decrypts and checks integrity makes one keyvault call.",
    )
    mac_tags: list[str] = Field(default_factory=list, max_length=MAX_ROWS)


class DecryptReply(Model):
    rows: list[dict[str, str]] = Field(description="Per row, column -> plaintext.")
    mac_valid: list[bool] = Field(
        default_factory=list, description="Per `mac_rows` entry, whether its tag verifies."
    )


class MacRequest(Model):
    rows: list[MacRow] = Field(max_length=MAX_ROWS)


class MacReply(Model):
    tags: list[str] = Field(description="base64 MAC tag per row, in order.")


class VerifyMacRequest(Model):
    rows: list[MacRow] = Field(max_length=MAX_ROWS)
    tags: list[str] = Field(max_length=MAX_ROWS)


class VerifyMacReply(Model):
    valid: list[bool]


class BlindIndexTerm(Model):
    field: str = Field(
        description="Which normalisation: family_name, given_name, date_of_birth, phone, mrn, "
        "email (rules in services/keyvault/ciphers.py `normalise`)."
    )
    value: str = Field(max_length=1000)


class BlindIndexQuery(Model):
    """One search token: a single term, or a compound of several (e.g. name + birth date)."""

    terms: list[BlindIndexTerm] = Field(min_length=1, max_length=4)


class BlindIndexRequest(Model):
    queries: list[BlindIndexQuery] = Field(max_length=MAX_ROWS)


class BlindIndexReply(Model):
    tokens: list[str]


STATUS = RpcMethod(SERVICE, "keyvault.status", StatusRequest, StatusReply)
INIT = RpcMethod(SERVICE, "keyvault.init", InitRequest, InitReply)
UNSEAL = RpcMethod(SERVICE, "keyvault.unseal", UnsealRequest, StatusReply)
SEAL = RpcMethod(SERVICE, "keyvault.seal", SealRequest, StatusReply, roles=ADMIN)
ROTATE = RpcMethod(SERVICE, "keyvault.rotate", RotateRequest, RotateReply, roles=ADMIN)
ENCRYPT = RpcMethod(SERVICE, "keyvault.encrypt", EncryptRequest, EncryptReply)
DECRYPT = RpcMethod(SERVICE, "keyvault.decrypt", DecryptRequest, DecryptReply)
"""Serves a user only with the user's forwarded, fresh request signature (see DESIGN §5)."""
MAC = RpcMethod(SERVICE, "keyvault.mac", MacRequest, MacReply)
VERIFY_MAC = RpcMethod(SERVICE, "keyvault.verify_mac", VerifyMacRequest, VerifyMacReply)
BLIND_INDEX = RpcMethod(SERVICE, "keyvault.blind_index", BlindIndexRequest, BlindIndexReply)
"""Like DECRYPT, needs the user's forwarded request signature."""
