"""Wire contracts of the auth service: staff accounts, roles, keys, registration tokens.

There are no passwords: a staff member is their Ed25519 public key (made on their
device), registered with a single-use token an administrator issued.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from contracts.base import ALL_ROLES, EventType, Model, Role, RpcMethod
from contracts.keyvault import MacRow

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
    SERVICE, "auth.bootstrap", BootstrapRequest, IssuedToken, write=True, keep_reply=False
)
"""Operator-only (reached over the bus, not through the gateway); refused once an
administrator exists."""
REGISTER = RpcMethod(SERVICE, "auth.register", RegisterRequest, Account, write=True)
RESOLVE_KEY = RpcMethod(SERVICE, "auth.resolve_key", ResolveKeyRequest, AccountRecord)
ME = RpcMethod(SERVICE, "auth.me", MeRequest, Account, roles=ALL_ROLES)
ISSUE_TOKEN = RpcMethod(
    SERVICE,
    "auth.issue_token",
    IssueTokenRequest,
    IssuedToken,
    write=True,
    roles=ADMIN,
    keep_reply=False,  # the token is shown once and stored nowhere
)
LIST_TOKENS = RpcMethod(SERVICE, "auth.list_tokens", ListTokensRequest, TokenList, roles=ADMIN)
REVOKE_TOKEN = RpcMethod(
    SERVICE, "auth.revoke_token", RevokeTokenRequest, TokenInfo, write=True, roles=ADMIN
)
LIST_STAFF = RpcMethod(SERVICE, "auth.list_staff", ListStaffRequest, StaffList, roles=ADMIN)
SET_ACCOUNT_STATUS = RpcMethod(
    SERVICE, "auth.set_account_status", SetAccountStatusRequest, Account, write=True, roles=ADMIN
)
ROTATE_KEY = RpcMethod(
    SERVICE, "auth.rotate_key", RotateKeyRequest, Account, write=True, roles=ALL_ROLES
)

DIRECTORY = RpcMethod(SERVICE, "auth.directory", DirectoryRequest, Directory, roles=ALL_ROLES)
"""Active staff, for picking a physician to book with or a colleague to chat with."""

ACCOUNT_CHANGED = EventType("auth.account.changed", AccountChanged)
