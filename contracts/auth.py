"""Wire contracts of the auth service: staff accounts, roles, keys, registration tokens.

There are no passwords: a staff member is their Ed25519 public key (made on their
device), registered with a single-use token an administrator issued.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import Field

from contracts.base import (
    ALL_ROLES,
    GATEWAY,
    OPERATOR,
    EventType,
    HttpRoute,
    Model,
    Role,
    RpcMethod,
)
from contracts.rows import MacRow

SERVICE = "auth"

ADMIN = frozenset({Role.administrator})
ACCOUNTS_TABLE = "staff_accounts"
USERNAME_PATTERN = r"^[a-z][a-z0-9._-]{2,63}$"
REGISTRATION_KEY_ID = "register"
"""The `keyid` of a registration request, signed by the new (not yet registered) key."""


class AccountStatus(StrEnum):
    active = "active"
    disabled = "disabled"


class TokenState(StrEnum):
    pending = "pending"
    used = "used"
    expired = "expired"
    revoked = "revoked"


class Account(Model):
    account_id: str
    username: str
    display_name: str
    role: Role
    status: AccountStatus
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, base64.")
    specialty: str | None = Field(default=None, description="Physicians: specialty/department.")
    created_at: datetime
    updated_at: datetime


class AccountRecord(Model):
    """An account with its row MAC, so a verifier can check the row itself."""

    account: Account
    mac: str = Field(description="base64 MAC tag over account_mac_row(account).")


def account_mac_row(account: Account) -> MacRow:
    """The canonical MAC input of an account row, shared by auth (which MACs it) and the
    keyvault (which re-verifies it before decrypting anything for that account)."""
    return MacRow(
        table=ACCOUNTS_TABLE,
        pk=account.account_id,
        columns=[
            ("username", account.username),
            ("display_name", account.display_name),
            ("role", account.role.value),
            ("status", account.status.value),
            ("public_key", account.public_key),
            ("specialty", account.specialty),
        ],
    )


class TokenRow(Model):
    """A registration-token row as stored (only a SHA-256 of the token itself)."""

    token_id: str
    token_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    expires_at: datetime
    issued_by: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    used_by: str | None = None
    used_at: datetime | None = None


TOKENS_TABLE = "registration_tokens"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    stamp = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return stamp.isoformat(timespec="microseconds")


def token_mac_row(token: TokenRow) -> MacRow:
    """The canonical MAC input of a registration-token row (every column but the MAC),
    shared by auth and the keyvault, which MACs token rows only for a signed operation."""
    return MacRow(
        table=TOKENS_TABLE,
        pk=token.token_id,
        columns=[
            ("token_hash", token.token_hash),
            ("role", token.role.value),
            ("expires_at", _iso(token.expires_at)),
            ("issued_by", token.issued_by),
            ("created_at", _iso(token.created_at)),
            ("revoked_at", _iso(token.revoked_at)),
            ("used_by", token.used_by),
            ("used_at", _iso(token.used_at)),
        ],
    )


def token_hash(token: str) -> str:
    """What is stored of a registration token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class IssuedToken(Model):
    """A registration token, shown once: only its hash is stored."""

    token_id: str
    token: str
    role: Role
    expires_at: datetime


class TokenInfo(Model):
    token_id: str
    role: Role
    state: TokenState
    expires_at: datetime
    issued_by: str | None
    created_at: datetime
    used_by: str | None = None
    revoked_at: datetime | None = None


class BootstrapRequest(Model):
    expires_hours: int = Field(default=72, ge=1, le=720)


class RegisterRequest(Model):
    token: str = Field(min_length=1, max_length=200)
    username: str = Field(pattern=USERNAME_PATTERN)
    display_name: str = Field(min_length=1, max_length=200)
    public_key: str = Field(min_length=40, max_length=60, description="Ed25519, base64.")
    specialty: str | None = Field(default=None, max_length=200)


class ResolveKeyRequest(Model):
    account_id: str = Field(max_length=64)
    verify: bool = Field(
        default=True,
        description="Verify the row MAC through the keyvault first. The keyvault itself "
        "asks with verify=False and checks the MAC with its own integrity key.",
    )


class MeRequest(Model):
    pass


class IssueTokenRequest(Model):
    role: Role
    expires_hours: int = Field(default=72, ge=1, le=720)


class ListTokensRequest(Model):
    state: TokenState | None = None


class TokenList(Model):
    tokens: list[TokenInfo]


class RevokeTokenRequest(Model):
    token_id: str = Field(max_length=64)


class ListStaffRequest(Model):
    role: Role | None = None


class StaffList(Model):
    accounts: list[Account]


class SetAccountStatusRequest(Model):
    account_id: str = Field(max_length=64)
    status: AccountStatus


class RotateKeyRequest(Model):
    new_public_key: str = Field(min_length=40, max_length=60)


class DirectoryRequest(Model):
    role: Role | None = None


class DirectoryEntry(Model):
    """What colleagues may know of each other: no keys, no status history."""

    account_id: str
    display_name: str
    role: Role
    specialty: str | None = None


class Directory(Model):
    staff: list[DirectoryEntry]


class AccountChanged(Model):
    """Published when an account's role, status or key changes: caches drop it at once."""

    account_id: str


BOOTSTRAP = RpcMethod(
    SERVICE,
    "auth.bootstrap",
    BootstrapRequest,
    IssuedToken,
    write=True,
    keep_reply=False,
    callers=frozenset({OPERATOR}),
)
"""Operator-only (reached over the bus, not through the gateway); refused once an
administrator exists (the keyvault, which MACs the token, keeps its own record of that)."""
REGISTER = RpcMethod(
    SERVICE,
    "auth.register",
    RegisterRequest,
    Account,
    write=True,
    route=HttpRoute("POST", "/register", status=201, signer="new_key"),
)
RESOLVE_KEY = RpcMethod(
    SERVICE,
    "auth.resolve_key",
    ResolveKeyRequest,
    AccountRecord,
    callers=frozenset({GATEWAY, "keyvault", "records", "scheduling", "chat", "audit"}),
)


class Me(Account):
    """The signed-in member's own account, and the clinic's settings every screen needs."""

    clinic_time_zone: str = Field(
        description="IANA zone of the clinic: show every time in it, whoever looks."
    )
    clinic_region: str = Field(description="ISO 3166-1 region national phone numbers are of.")


ME = RpcMethod(SERVICE, "auth.me", MeRequest, Me, roles=ALL_ROLES, route=HttpRoute("GET", "/me"))
ISSUE_TOKEN = RpcMethod(
    SERVICE,
    "auth.issue_token",
    IssueTokenRequest,
    IssuedToken,
    write=True,
    roles=ADMIN,
    keep_reply=False,  # the token is shown once and stored nowhere
    route=HttpRoute("POST", "/tokens", status=201),
)
LIST_TOKENS = RpcMethod(
    SERVICE,
    "auth.list_tokens",
    ListTokensRequest,
    TokenList,
    roles=ADMIN,
    route=HttpRoute("GET", "/tokens", query=("state",)),
)
REVOKE_TOKEN = RpcMethod(
    SERVICE,
    "auth.revoke_token",
    RevokeTokenRequest,
    TokenInfo,
    write=True,
    roles=ADMIN,
    route=HttpRoute("POST", "/tokens/{token_id}/revoke"),
)
LIST_STAFF = RpcMethod(
    SERVICE,
    "auth.list_staff",
    ListStaffRequest,
    StaffList,
    roles=ADMIN,
    route=HttpRoute("GET", "/staff", query=("role",)),
)
SET_ACCOUNT_STATUS = RpcMethod(
    SERVICE,
    "auth.set_account_status",
    SetAccountStatusRequest,
    Account,
    write=True,
    roles=ADMIN,
    route=HttpRoute(
        "PUT",
        "/staff/{account_id}/status",
        summary="Disable or re-enable an account (a disabled account is refused at once).",
    ),
)
ROTATE_KEY = RpcMethod(
    SERVICE,
    "auth.rotate_key",
    RotateKeyRequest,
    Account,
    write=True,
    roles=ALL_ROLES,
    route=HttpRoute(
        "PUT", "/me/key", summary="Replace one's own key; the request is signed by the old one."
    ),
)

DIRECTORY = RpcMethod(
    SERVICE,
    "auth.directory",
    DirectoryRequest,
    Directory,
    roles=ALL_ROLES,
    route=HttpRoute(
        "GET",
        "/directory",
        query=("role",),
        summary="Active colleagues (names, roles, specialties), for booking and chat.",
    ),
)
"""Active staff, for picking a physician to book with or a colleague to chat with."""

ACCOUNT_CHANGED = EventType("auth.account.changed", AccountChanged, publishers=frozenset({SERVICE}))
