"""Wire contracts of the keyvault: lifecycle, field encryption, MACs and blind indexes.

Binary values travel as base64 (standard alphabet) strings. Every cryptographic method
is batched: one call carries all the fields of one request, for many rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from contracts.auth import Account, AccountRecord, TokenRow
from contracts.base import GATEWAY, OPERATOR, HttpRoute, Model, Role, RpcMethod
from contracts.rows import MacRow as MacRow

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
    """Used for new encryptions (data keys: one of the pool, picked per row)."""
    retired = "retired"
    """Still decrypts (unless below its purpose's minimum decryption version)."""
    destroyed = "destroyed"
    """Its wrapped copy is gone: nothing under it decrypts, ever (the id is never reused)."""


class KeyInfo(Model):
    key_id: int
    purpose: KeyPurpose
    state: KeyState
    use_count: int
    decrypts: bool = Field(
        default=True,
        description="False below its purpose's minimum decryption version, or destroyed.",
    )


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
    generation: int = Field(default=0, description="How many times the root key rotated.")
    min_decryption: dict[KeyPurpose, int] = Field(
        default_factory=dict,
        description="Per purpose, the smallest key id that still decrypts or verifies.",
    )
    min_field_version: int = Field(
        default=1, description="Field envelopes of an older version no longer decrypt."
    )


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
    add: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Fresh data keys to add (the integrity and blind-index keys are one "
        "key each: rotating them makes one new key and retires the old).",
    )
    retire_existing: bool = Field(
        default=True, description="Retire current active data keys from new encryptions."
    )
    purpose: KeyPurpose = Field(
        default=KeyPurpose.data,
        description="Which keys: the data key pool, the integrity key or the blind-index key.",
    )


class RotateReply(Model):
    added: list[int]
    retired: list[int]


class FieldRow(Model):
    """Fields of one row. The context (table, column, row id) and the row's binding (the
    patient, physician or conversation it belongs to) are bound to each ciphertext."""

    table: str = Field(min_length=1, max_length=64)
    row_id: str = Field(min_length=1, max_length=128)
    fields: dict[str, str] = Field(
        description="column -> plaintext (encrypt) or base64 ciphertext (decrypt)"
    )
    binding: dict[str, str] = Field(
        default_factory=dict,
        max_length=3,
        description="patient / physician / conversation -> id: part of every field's AAD "
        "(envelope version 2), so the keyvault knows whose row it decrypts.",
    )


class EncryptRequest(Model):
    rows: list[FieldRow] = Field(max_length=MAX_ROWS)


class EncryptReply(Model):
    rows: list[dict[str, str]] = Field(description="Per row, column -> base64 ciphertext.")


class Countersigned(Model):
    """The other signed operation a `countersigned` grant needs (a bulk export's
    kick-off): its proof as the gateway forwarded it (JSON) and its signed body."""

    proof: str = Field(max_length=16384)
    body: str = Field(max_length=16384, description="The signed body, base64.")


class DecryptRequest(Model):
    """Served only for a user's signed operation whose grant allows these rows, once."""

    countersigned: Countersigned | None = None

    rows: list[FieldRow] = Field(max_length=MAX_ROWS)
    mac_rows: list[MacRow] = Field(
        default_factory=list,
        max_length=MAX_ROWS,
        description="Rows whose MACs to check in the same call (as VERIFY_MAC does), so a "
        "read that decrypts and checks integrity makes one keyvault call.",
    )
    mac_tags: list[str] = Field(default_factory=list, max_length=MAX_ROWS)


class DecryptReply(Model):
    rows: list[dict[str, str]] = Field(
        description="Per row, column -> plaintext ({} for a row in `failed` or, for a "
        "search, a row that does not match the signed search)."
    )
    failed: list[int] = Field(
        default_factory=list,
        description="Indexes of rows whose ciphertext does not decrypt (moved or edited).",
    )
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


class MacTokenRequest(Model):
    """A registration-token row to MAC, for an administrator's signed operation: a new
    token, or the revocation of `previous` (whose MAC the keyvault checks itself)."""

    token: TokenRow
    previous: TokenRow | None = None
    previous_mac: str | None = None


class MacAccountRequest(Model):
    """A staff-account row to MAC, for one signed operation: a registration (the new key's
    own signature and the token row, whose MAC the keyvault checks; the role comes only
    from the token), a status change by an administrator, or one's own key rotation
    (`previous`: the row as stored, MAC checked)."""

    account: Account
    previous: AccountRecord | None = None
    token: TokenRow | None = None
    token_mac: str | None = None


class MacAccountReply(Model):
    account_mac: str
    token: TokenRow | None = Field(default=None, description="Registration: the token, used.")
    token_mac: str | None = None


TABLE_OWNERS: dict[str, str] = {
    "staff_accounts": "auth",
    "registration_tokens": "auth",
    "patients": "records",
    "encounter_versions": "records",
    "prescriptions": "records",
    "break_glass": "records",
    "allergy_lists": "records",
    "appointments": "scheduling",
    "conversations": "chat",
    "messages": "chat",
    "audit_chain_head": "audit",
}
"""Which service's table each keyvault row belongs to: the keyvault encrypts, decrypts,
MACs and verifies rows only for the service that owns their table (no oracles)."""
ACCOUNT_TABLES = frozenset({"staff_accounts", "registration_tokens"})
"""MAC'd only through MAC_TOKEN and MAC_ACCOUNT, for a signed operation."""

STATUS = RpcMethod(
    SERVICE, "keyvault.status", StatusRequest, StatusReply, callers=frozenset({GATEWAY, OPERATOR})
)
INIT = RpcMethod(SERVICE, "keyvault.init", InitRequest, InitReply, callers=frozenset({OPERATOR}))
UNSEAL = RpcMethod(
    SERVICE, "keyvault.unseal", UnsealRequest, StatusReply, callers=frozenset({GATEWAY, OPERATOR})
)
"""No user signature: a share is its own authority (sealed to the replica's own key)."""
SEAL = RpcMethod(
    SERVICE,
    "keyvault.seal",
    SealRequest,
    StatusReply,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/seal", summary="Seal every replica (each wipes its keys)."),
    per_replica=True,
)
ROTATE = RpcMethod(
    SERVICE,
    "keyvault.rotate",
    RotateRequest,
    RotateReply,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/rotate"),
)
ENCRYPT = RpcMethod(
    SERVICE,
    "keyvault.encrypt",
    EncryptRequest,
    EncryptReply,
    callers=frozenset({"records", "scheduling", "chat"}),
)
DECRYPT = RpcMethod(
    SERVICE,
    "keyvault.decrypt",
    DecryptRequest,
    DecryptReply,
    callers=frozenset({"records", "scheduling", "chat"}),
    on_behalf=True,
)
"""Serves a user only with the user's forwarded, fresh proof of an operation whose grant
allows these rows, once per proof (see `contracts.grants`)."""
MAC = RpcMethod(
    SERVICE, "keyvault.mac", MacRequest, MacReply, callers=frozenset({"records", "audit"})
)
VERIFY_MAC = RpcMethod(
    SERVICE,
    "keyvault.verify_mac",
    VerifyMacRequest,
    VerifyMacReply,
    callers=frozenset({"auth", "records", "audit"}),
)
BLIND_INDEX = RpcMethod(
    SERVICE,
    "keyvault.blind_index",
    BlindIndexRequest,
    BlindIndexReply,
    callers=frozenset({"records"}),
    on_behalf=True,
)
"""Like DECRYPT: for the signed request's own terms only, once per proof."""
MAC_TOKEN = RpcMethod(
    SERVICE,
    "keyvault.mac_token",
    MacTokenRequest,
    MacReply,
    callers=frozenset({"auth"}),
    on_behalf=True,
)
"""For an administrator's signed issue or revocation of a token."""
MAC_BOOTSTRAP_TOKEN = RpcMethod(
    SERVICE,
    "keyvault.mac_bootstrap_token",
    MacTokenRequest,
    MacReply,
    callers=frozenset({"auth"}),
)
"""The first administrator's token (operator, no signature): only while no administrator
was ever registered, as the keyvault itself records at each registration it MACs."""
MAC_ACCOUNT = RpcMethod(
    SERVICE,
    "keyvault.mac_account",
    MacAccountRequest,
    MacAccountReply,
    callers=frozenset({"auth"}),
    on_behalf=True,
)


# ---------------------------------------------------------------------------- key lifecycle
#
# Rotate (above) → rewrap every row online → set a minimum decryption version → destroy
# the keys no row uses; rekey the shares; rotate the root key. Every step is an
# administrator's own signed request for its route; the two that involve the root key
# also need K current shares, each sealed to the coordinating replica's own key.

MAX_ID = 2**32 - 1
MAX_COUNT = 10**12
REWRAP_SERVICES = frozenset(TABLE_OWNERS.values())
"""The services that own encrypted or MAC'd tables: a rewrap run is complete once each of
them has rewrapped every one of its tables (`mesh.rewrap`)."""


class RewrapState(StrEnum):
    running = "running"
    complete = "complete"
    cancelled = "cancelled"


class RewrapStartRequest(Model):
    """Start re-encrypting every field and re-MACing every MAC'd row of every service under
    the active keys (and upgrading old envelopes), online, in each owning service."""

    reindex: bool = Field(
        default=False,
        description="Also recompute every blind index (turned on by itself when the "
        "blind-index key changed since the last complete reindex).",
    )
    batch_rows: int = Field(default=200, ge=1, le=2000, description="Rows per transaction.")
    rows_per_second: int = Field(
        default=2000,
        ge=0,
        le=1_000_000,
        description="Throttle per service (0: as fast as the keyvault answers).",
    )
    lease_seconds: float = Field(
        default=15.0,
        ge=1.0,
        le=600.0,
        description="How long a service replica holds the job after it last made progress "
        "(another replica takes over after a crash).",
    )


class RewrapStatusRequest(Model):
    pass


class RewrapCancelRequest(Model):
    pass


class TableProgress(Model):
    """One table's progress, from its own service's scan."""

    table: str = Field(max_length=64)
    pass_number: int = Field(default=1, ge=1, le=MAX_COUNT)
    rows_total: int = Field(default=0, ge=0, le=MAX_COUNT)
    rows_scanned: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Rows read in the current pass."
    )
    rows_rewrapped: int = Field(default=0, ge=0, le=MAX_COUNT)
    fields_rewrapped: int = Field(default=0, ge=0, le=MAX_COUNT)
    macs_rewrapped: int = Field(default=0, ge=0, le=MAX_COUNT)
    tokens_rewritten: int = Field(default=0, ge=0, le=MAX_COUNT)
    rows_changed: int = Field(
        default=0,
        ge=0,
        le=MAX_COUNT,
        description="Rows a user changed meanwhile: their change kept, taken up again in "
        "the next pass.",
    )
    rows_failed: int = Field(default=0, ge=0, le=MAX_COUNT)
    usage: dict[int, int] = Field(
        default_factory=dict,
        max_length=4096,
        description="Key id -> fields and MAC tags under it (over the last complete pass "
        "once `done`).",
    )
    versions: dict[int, int] = Field(
        default_factory=dict, max_length=16, description="Envelope version -> fields."
    )
    seconds: float = Field(default=0.0, ge=0, le=1e9, description="Time spent working.")
    done: bool = False


class TableStatus(TableProgress):
    service: str
    updated_at: datetime | None = None


class RewrapFailure(Model):
    """A row the rewrap could not move (reported, never dropped): it does not decrypt, its
    MAC fails, or it is under a destroyed key."""

    table: str = Field(max_length=64)
    pk: str = Field(max_length=400)
    reason: str = Field(max_length=300)
    service: str | None = Field(default=None, max_length=32)


class RewrapStatus(Model):
    run_id: str | None = None
    state: RewrapState | None = None
    reindex: bool = False
    started_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    batch_rows: int = 0
    rows_per_second: int = 0
    lease_seconds: float = 0.0
    tables: list[TableStatus] = []
    services_done: list[str] = []
    services_pending: list[str] = []
    rows_total: int = 0
    rows_done: int = Field(
        default=0, description="Rows scanned in the first pass (then the verification pass)."
    )
    rate_rows_per_s: float = 0.0
    eta_seconds: float | None = None
    failures: list[RewrapFailure] = []
    retired_in_use: dict[int, int] = Field(
        default_factory=dict, description="Key id -> fields and tags still under it."
    )


class RewrapJobRequest(Model):
    pass


class RewrapJobReply(Model):
    """What an owning service needs to run its share of the current rewrap."""

    run_id: str | None = None
    reindex: bool = False
    batch_rows: int = 200
    rows_per_second: int = 0
    lease_seconds: float = 15.0
    active_keys: list[int] = []
    integrity_key: int | None = None
    destroyed_keys: list[int] = []
    field_version: int = 2
    done: bool = Field(default=False, description="This service has finished the run.")


MAC_PK = "$pk"
"""In `RewrapMac.binding_columns`: the binding value is the MAC'd row's primary key."""


class RewrapMac(Model):
    """A MAC'd row: its stored MAC input and tag (checked before anything is re-MAC'd), where
    each rewrapped field's ciphertext sits in it, and where each binding value sits in it."""

    row: MacRow
    tag: str = Field(max_length=200)
    columns: dict[str, str] = Field(
        default_factory=dict, max_length=16, description="Field -> MAC column of its ciphertext."
    )
    binding_columns: dict[str, str] = Field(
        default_factory=dict,
        max_length=3,
        description=f"Binding -> MAC column holding its value ({MAC_PK!r}: the MAC'd key).",
    )


class RewrapRow(Model):
    """One stored row: its context, its ciphertexts (field -> base64) and its MAC."""

    table: str = Field(min_length=1, max_length=64)
    row_id: str = Field(min_length=1, max_length=128)
    binding: dict[str, str] = Field(default_factory=dict, max_length=3)
    fields: dict[str, str] = Field(default_factory=dict, max_length=16)
    mac: RewrapMac | None = None
    reindex: bool = Field(
        default=False, description="Compute the table's blind indexes (`BLIND_INDEXES`)."
    )


class RewrapRequest(Model):
    run_id: str = Field(max_length=36)
    rows: list[RewrapRow] = Field(max_length=2000)


class RewrappedRow(Model):
    """Ciphertext only, never plaintext: the fields moved to an active key (same table,
    column, row id and binding), the new MAC, the recomputed blind indexes."""

    fields: dict[str, str] = {}
    mac: str | None = None
    tokens: dict[str, list[str]] = {}
    error: str | None = None


class RewrapReply(Model):
    rows: list[RewrappedRow]
    active_keys: list[int]
    integrity_key: int | None = None


class RewrapReportRequest(Model):
    run_id: str = Field(max_length=36)
    tables: list[TableProgress] = Field(max_length=64)
    failures: list[RewrapFailure] = Field(default_factory=list, max_length=1000)
    done: bool = False


class RewrapReportReply(Model):
    state: RewrapState


class KeyUsageRequest(Model):
    pass


class KeyUsageReply(Model):
    """A fresh scan of a service's tables: key id -> fields and MAC tags under it."""

    tables: dict[str, dict[int, int]]
    versions: dict[str, dict[int, int]] = {}


class MinDecryptionRequest(Model):
    purpose: KeyPurpose | None = None
    min_key_id: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ID,
        description="Keys of `purpose` with a smaller id no longer decrypt or verify.",
    )
    min_field_version: int | None = Field(
        default=None, ge=1, le=2, description="Older field envelopes no longer decrypt."
    )
    force: bool = Field(
        default=False,
        description="Even though the last complete rewrap did not prove that no row "
        "needs the refused keys (they can be allowed again).",
    )


class MinDecryptionReply(Model):
    min_decryption: dict[KeyPurpose, int]
    min_field_version: int
    refused_keys: list[int]


class DestroyKeyRequest(Model):
    key_id: int = Field(ge=1, le=MAX_ID)


class DestroyKeyReply(Model):
    key_id: int
    purpose: KeyPurpose
    state: KeyState
    checked: dict[str, int] = Field(
        description="Per service, the fields and tags its fresh scan found under the key."
    )


class CeremonyKind(StrEnum):
    rekey = "rekey"
    """New shares (a new K-of-N) for the same root key: old shares stop working."""
    rotate_root = "rotate_root"
    """A new root key: every data key rewrapped under it, new shares issued."""


class CeremonyState(StrEnum):
    collecting = "collecting"
    prepared = "prepared"
    committed = "committed"
    cancelled = "cancelled"


class CeremonyStartRequest(Model):
    kind: CeremonyKind
    threshold: int = Field(default=3, ge=2, le=255, description="The new K.")
    shares: int = Field(default=5, ge=2, le=255, description="The new N.")
    recipient_public_key: str = Field(
        max_length=64,
        description="X25519 public key (base64) of the tool that receives the new shares, "
        "each sealed to it.",
    )


class CeremonyShareRequest(Model):
    ceremony_id: str = Field(max_length=36)
    instance: str = Field(max_length=200, description="The coordinating replica.")
    sealed_share: str = Field(
        max_length=4096, description="A current share, sealed to the coordinator's key."
    )


class CeremonyCommitRequest(Model):
    ceremony_id: str = Field(max_length=36)
    instance: str = Field(max_length=200)
    shares_digest: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="`ceremony_digest` of the new shares: proves they were received.",
    )


class CeremonyCancelRequest(Model):
    ceremony_id: str = Field(max_length=36)


class CeremonyStatusRequest(Model):
    pass


class CeremonyStatus(Model):
    ceremony_id: str | None = None
    kind: CeremonyKind | None = None
    state: CeremonyState | None = None
    threshold: int | None = Field(default=None, description="The new K.")
    shares: int | None = Field(default=None, description="The new N.")
    required: int | None = Field(default=None, description="Current shares needed (K).")
    progress: int = 0
    coordinator: str | None = None
    transport_public_key: str | None = Field(
        default=None, description="The coordinator's X25519 key: seal current shares to it."
    )
    started_by: str | None = None
    started_at: datetime | None = None
    sealed_shares: list[str] = Field(
        default_factory=list,
        description="Once prepared: the new shares, each sealed to the recipient key.",
    )
    generation: int = 0
    message: str | None = None


def ceremony_digest(ceremony_id: str, shares: list[str]) -> str:
    """What a commit carries: SHA-256 over the ceremony id and the new shares, so only
    the holder of the recipient key (who could open them) can commit."""
    import hashlib

    text = "\n".join(["medihaven.ceremony.v1", ceremony_id, *shares])
    return hashlib.sha256(text.encode()).hexdigest()


class AdoptRootRequest(Model):
    """The new root key after a rotation, from the replica that made it: wrapped under the
    old root (only a holder of it could make this) and sealed to this replica's key."""

    generation: int = Field(ge=1, le=MAX_ID)
    sealed_root: str = Field(max_length=4096)


class AdoptRootReply(Model):
    instance: str
    adopted: bool


class SyncRequest(Model):
    pass


class SyncReply(Model):
    instance: str
    generation: int
    unsealed: bool
    transport_public_key: str


@dataclass(frozen=True)
class IndexTerm:
    """A blind-index term: normalisation `field`, from `column`'s plaintext (its JSON
    `key`, or the whole value when None)."""

    field: str
    column: str
    key: str | None = None


@dataclass(frozen=True)
class BlindIndexSpec:
    """One stored blind index of a table: one token per query (a single term, or a
    compound); several queries make a set of tokens (e.g. both sounds of a name)."""

    name: str
    queries: tuple[tuple[IndexTerm, ...], ...]


_FAMILY = IndexTerm("family_name", "identity", "family_name")
_GIVEN = IndexTerm("given_name", "identity", "given_name")
_BORN = IndexTerm("date_of_birth", "identity", "date_of_birth")
BLIND_INDEXES: dict[str, tuple[BlindIndexSpec, ...]] = {
    "patients": (
        BlindIndexSpec("mrn", ((IndexTerm("mrn", "mrn"),),)),
        BlindIndexSpec("identity", ((_FAMILY, _GIVEN, _BORN),)),
        BlindIndexSpec("name_dob", ((_FAMILY, _BORN),)),
        BlindIndexSpec("phone", ((IndexTerm("phone", "contact", "phone"),),)),
        BlindIndexSpec(
            "sounds",
            (
                (IndexTerm("family_sound", "identity", "family_name"), _BORN),
                (IndexTerm("family_sound_alt", "identity", "family_name"), _BORN),
            ),
        ),
    ),
}
"""The only blind indexes a rewrap recomputes, per table, from the row's own ciphertext
(which the keyvault decrypts itself): the same tokens records stores at registration, so a
rewrap reveals nothing the database does not already hold. A service cannot ask for any
other index of its rows."""

REWRAP_START = RpcMethod(
    SERVICE,
    "keyvault.rewrap_start",
    RewrapStartRequest,
    RewrapStatus,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/rewrap", summary="Start rewrapping every row online."),
)
REWRAP_STATUS = RpcMethod(
    SERVICE,
    "keyvault.rewrap_status",
    RewrapStatusRequest,
    RewrapStatus,
    roles=ADMIN,
    route=HttpRoute("GET", "/vault/rewrap", summary="The current (or last) rewrap's progress."),
)
REWRAP_CANCEL = RpcMethod(
    SERVICE,
    "keyvault.rewrap_cancel",
    RewrapCancelRequest,
    RewrapStatus,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/rewrap/cancel"),
)
SET_MIN_DECRYPTION = RpcMethod(
    SERVICE,
    "keyvault.set_min_decryption",
    MinDecryptionRequest,
    MinDecryptionReply,
    roles=ADMIN,
    route=HttpRoute(
        "POST", "/vault/min-decryption", summary="Refuse keys (or envelopes) below a minimum."
    ),
)
DESTROY_KEY = RpcMethod(
    SERVICE,
    "keyvault.destroy_key",
    DestroyKeyRequest,
    DestroyKeyReply,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/keys/{key_id}/destroy", summary="Destroy a key no row uses."),
)
CEREMONY_START = RpcMethod(
    SERVICE,
    "keyvault.ceremony_start",
    CeremonyStartRequest,
    CeremonyStatus,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/ceremony", summary="Start rekeying the shares or the root."),
)
CEREMONY_STATUS = RpcMethod(
    SERVICE,
    "keyvault.ceremony_status",
    CeremonyStatusRequest,
    CeremonyStatus,
    roles=ADMIN,
    route=HttpRoute("GET", "/vault/ceremony"),
)
CEREMONY_SHARE = RpcMethod(
    SERVICE,
    "keyvault.ceremony_share",
    CeremonyShareRequest,
    CeremonyStatus,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/ceremony/share", instance="instance"),
)
CEREMONY_COMMIT = RpcMethod(
    SERVICE,
    "keyvault.ceremony_commit",
    CeremonyCommitRequest,
    CeremonyStatus,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/ceremony/commit", instance="instance"),
)
CEREMONY_CANCEL = RpcMethod(
    SERVICE,
    "keyvault.ceremony_cancel",
    CeremonyCancelRequest,
    CeremonyStatus,
    roles=ADMIN,
    route=HttpRoute("POST", "/vault/ceremony/cancel"),
)
REWRAP_JOB = RpcMethod(
    SERVICE,
    "keyvault.rewrap_job",
    RewrapJobRequest,
    RewrapJobReply,
    callers=REWRAP_SERVICES,
)
REWRAP = RpcMethod(SERVICE, "keyvault.rewrap", RewrapRequest, RewrapReply, callers=REWRAP_SERVICES)
"""Ciphertext → ciphertext (Vault transit `rewrap`), only for the table's owner and only
while an administrator's rewrap run is on; never returns plaintext."""
REWRAP_REPORT = RpcMethod(
    SERVICE,
    "keyvault.rewrap_report",
    RewrapReportRequest,
    RewrapReportReply,
    callers=REWRAP_SERVICES,
)
ADOPT_ROOT = RpcMethod(
    SERVICE,
    "keyvault.adopt_root",
    AdoptRootRequest,
    AdoptRootReply,
    callers=frozenset({SERVICE}),
    per_replica=True,
)
"""Replica to replica, after a root rotation (addressed to each replica's own queue)."""
SYNC = RpcMethod(SERVICE, "keyvault.sync", SyncRequest, SyncReply, callers=frozenset({SERVICE}))
"""Replica to replica (broadcast): read the keys and policy now, after a lifecycle step."""
