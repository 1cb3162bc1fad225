"""A small clinic for service tests: an unsealed keyvault, staff with real Ed25519 keys,
and a stand-in for the auth service's `resolve_key`, all in an isolated namespace.

Services under test are started by the test itself (in-process `Runtime`s on the
clinic's settings). `Clinic.call` sends an RPC as the gateway would for a staff member:
connected as the gateway's broker identity, with the principal and a fresh proof of the
very HTTP request that the RPC stands for (`contracts.http.target_of`), signed with the
member's key, so every service's check of the forwarded signature accepts it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel

from contracts import keyvault as kv
from contracts.auth import (
    RESOLVE_KEY,
    Account,
    AccountRecord,
    AccountStatus,
    ResolveKeyRequest,
    account_mac_row,
)
from contracts.base import GATEWAY, Principal, Role, RpcMethod
from contracts.http import target_of
from mesh.context import CallContext
from mesh.errors import NotFound
from mesh.httpsig import proof_from_headers, sign_request
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from services.keyvault.state import vault_of
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault

ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)

TEST_ORIGIN = "http://gateway.test"


@dataclass
class StaffMember:
    key: Ed25519PrivateKey
    account: Account

    @property
    def account_id(self) -> str:
        return self.account.account_id

    @property
    def principal(self) -> Principal:
        return Principal(
            account_id=self.account.account_id,
            role=self.account.role,
            username=self.account.username,
        )

    def proof(
        self,
        method: str = "GET",
        target_uri: str = f"{TEST_ORIGIN}/api/v1/test",
        body: bytes = b"",
        *,
        created: int | None = None,
        key_id: str | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """A request proof as the gateway forwards it (RequestProof JSON)."""
        headers = sign_request(
            key or self.key, key_id or self.account_id, method, target_uri, body, created=created
        )
        return proof_from_headers(method, target_uri, headers).model_dump_json()

    def signed(
        self, method: RpcMethod[Any, Any], request: BaseModel, *, created: int | None = None
    ) -> tuple[str, bytes]:
        """(proof, body) of the HTTP request that `request` is sent as, signed by this
        member (what the gateway forwards with the RPC)."""
        verb, path, body = target_of(method, request)
        return self.proof(verb, f"{TEST_ORIGIN}{path}", body, created=created), body


@dataclass
class Clinic:
    settings: Settings
    keyvault: Runtime
    client: Runtime
    records: dict[str, AccountRecord] = field(default_factory=dict)
    services: list[Runtime] = field(default_factory=list)
    """In-process services whose account caches follow the clinic's staff changes."""

    async def add_staff(
        self,
        username: str,
        role: Role,
        *,
        status: AccountStatus = AccountStatus.active,
        specialty: str | None = None,
    ) -> StaffMember:
        """A staff member whose account row is MAC'd by the clinic's keyvault."""
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        now = datetime.now(UTC)
        account = Account(
            account_id=f"acc-{username}",
            username=username,
            display_name=username.replace("-", " ").title(),
            role=role,
            status=status,
            public_key=base64.b64encode(public).decode(),
            specialty=specialty,
            created_at=now,
            updated_at=now,
        )
        # As if auth had registered them: MAC'd by the clinic's own keyvault object (the
        # keyvault MACs account rows on the bus only for a signed registration).
        (tag,) = await vault_of(self.keyvault).mac([account_mac_row(account)])
        self.records[account.account_id] = AccountRecord(account=account, mac=tag)
        self.forget(account.account_id)
        return StaffMember(key, account)

    async def encrypt(self, rows: list[kv.FieldRow]) -> list[dict[str, str]]:
        """Ciphertexts made by the clinic's keyvault object itself (for tests that write
        rows straight into a service's database)."""
        vault = vault_of(self.keyvault)
        encrypted: list[dict[str, str]] = await vault.encrypt(rows)
        return encrypted

    def forget(self, account_id: str) -> None:
        """Every in-process service drops its cached copy of the account."""
        for runtime in self.services:
            if runtime.accounts is not None:
                runtime.accounts.forget(account_id)

    async def call(
        self,
        method: RpcMethod[ReqT, RespT],
        request: ReqT,
        staff: StaffMember | None,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> RespT:
        """Call `method` as `staff` (principal + fresh proof of this very request), as the
        gateway would."""
        proof, body = staff.signed(method, request) if staff and method.route else (None, b"")
        return await self.client.rpc.call(
            method,
            request,
            principal=staff.principal if staff else None,
            proof=kwargs.pop("proof", proof),
            signed_body=kwargs.pop("signed_body", body),
            idempotency_key=idempotency_key,
            **kwargs,
        )


def stand_in_auth(records: dict[str, AccountRecord]) -> RpcRouter:
    """Answers `auth.resolve_key` from `records`, as the auth service would."""
    router = RpcRouter("auth")

    @router.handler(RESOLVE_KEY)
    async def resolve(req: ResolveKeyRequest, ctx: CallContext) -> AccountRecord:
        record = records.get(req.account_id)
        if record is None:
            raise NotFound("no such account")
        return record

    return router


@asynccontextmanager
async def clinic(
    tag: str, *, client_consumers: list[ConsumerSpec] | None = None
) -> AsyncIterator[Clinic]:
    """A clinic in its own namespace (vhost, databases), torn down afterwards."""
    with isolated_settings(tag) as settings:
        records: dict[str, AccountRecord] = {}
        auth = await Runtime.start(
            "auth", settings, router=stand_in_auth(records), use_database=False
        )
        client = await Runtime.start(
            f"{tag}-client", settings, use_database=False, identity=GATEWAY
        )
        # Tests watch events (audit, scheduling…) through an observer of their own: the
        # gateway's broker user may bind only to the events the gateway consumes.
        observer = await Runtime.start(
            f"{tag}-observer",
            settings,
            use_database=False,
            consumers=client_consumers or [],
            identity="observer",
        )
        try:
            async with unsealed_keyvault(settings) as (keyvault, _):
                yield Clinic(settings, keyvault, client, records, services=[keyvault])
        finally:
            await observer.stop()
            await client.stop()
            await auth.stop()
