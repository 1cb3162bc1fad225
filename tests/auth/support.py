"""A real auth service with an unsealed keyvault, for identity tests."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import auth
from contracts.base import Principal
from mesh.httpsig import proof_from_headers, sign_request
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from services.auth.handlers import router
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "auth" / "migrations"
URI = "http://gateway.test/api/v1/test"


def public_key_of(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def proof(key: Ed25519PrivateKey, key_id: str, **kwargs: object) -> str:
    headers = sign_request(key, key_id, "POST", URI, b"{}", **kwargs)  # type: ignore[arg-type]
    return proof_from_headers("POST", URI, headers).model_dump_json()


@dataclass
class Member:
    key: Ed25519PrivateKey
    account: auth.Account

    @property
    def principal(self) -> Principal:
        return Principal(account_id=self.account.account_id, role=self.account.role)

    def proof(self) -> str:
        return proof(self.key, self.account.account_id)


@dataclass
class Identity:
    settings: Settings
    auth: Runtime
    keyvault: Runtime
    client: Runtime
    _admin: Member | None = None

    async def register(self, token: str, username: str, **extra: str) -> Member:
        key = Ed25519PrivateKey.generate()
        account = await self.client.rpc.call(
            auth.REGISTER,
            auth.RegisterRequest(
                token=token,
                username=username,
                display_name=username.title(),
                public_key=public_key_of(key),
                **extra,
            ),
            proof=proof(key, auth.REGISTRATION_KEY_ID),
            idempotency_key=str(uuid.uuid4()),
        )
        return Member(key, account)

    async def as_(self, member: Member, method, request, **kwargs):  # type: ignore[no-untyped-def]
        if method.write:
            kwargs.setdefault("idempotency_key", str(uuid.uuid4()))
        return await self.client.rpc.call(
            method, request, principal=member.principal, proof=member.proof(), **kwargs
        )

    async def admin(self) -> Member:
        """The first administrator (bootstrapped once per namespace)."""
        if self._admin is not None:
            return self._admin
        token = await self.client.rpc.call(
            auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=str(uuid.uuid4())
        )
        self._admin = await self.register(token.token, f"admin-{uuid.uuid4().hex[:6]}")
        return self._admin


@asynccontextmanager
async def identity(
    tag: str, client_consumers: list[ConsumerSpec] | None = None
) -> AsyncIterator[Identity]:
    with isolated_settings(tag) as settings:
        async with unsealed_keyvault(settings) as (keyvault, _):
            service = await Runtime.start("auth", settings, router=router, migrations=MIGRATIONS)
            client = await Runtime.start(
                f"{tag}-client", settings, use_database=False, consumers=client_consumers or []
            )
            try:
                yield Identity(settings, service, keyvault, client)
            finally:
                await client.stop()
                await service.stop()
