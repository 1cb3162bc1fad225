"""A real auth service with an unsealed keyvault, for identity tests."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel

from contracts import auth
from contracts.base import GATEWAY, OPERATOR, Principal, RpcMethod
from contracts.http import target_of
from mesh.httpsig import proof_from_headers, sign_request
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from services.auth.handlers import router, use_local_accounts
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault
from tests.support.clinic import TEST_ORIGIN

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "auth" / "migrations"
URI = "http://gateway.test/api/v1/test"


def public_key_of(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def proof(key: Ed25519PrivateKey, key_id: str, **kwargs: object) -> str:
    """A proof of some request that is not the one being sent (for refusal tests)."""
    headers = sign_request(key, key_id, "POST", URI, b"{}", **kwargs)  # type: ignore[arg-type]
    return proof_from_headers("POST", URI, headers).model_dump_json()


def signed(
    key: Ed25519PrivateKey,
    key_id: str,
    method: RpcMethod[Any, Any],
    request: BaseModel,
    **kwargs: object,
) -> tuple[str, bytes]:
    """(proof, body) of the very HTTP request `request` is sent as, signed by `key`."""
    verb, path, body = target_of(method, request)
    uri = f"{TEST_ORIGIN}{path}"
    headers = sign_request(key, key_id, verb, uri, body, **kwargs)  # type: ignore[arg-type]
    return proof_from_headers(verb, uri, headers).model_dump_json(), body


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

    operator: Runtime | None = None

    async def register(self, token: str, username: str, **extra: str) -> Member:
        key = Ed25519PrivateKey.generate()
        request = auth.RegisterRequest(
            token=token,
            username=username,
            display_name=username.title(),
            public_key=public_key_of(key),
            **extra,
        )
        proof_json, body = signed(key, auth.REGISTRATION_KEY_ID, auth.REGISTER, request)
        account = await self.client.rpc.call(
            auth.REGISTER,
            request,
            proof=proof_json,
            signed_body=body,
            idempotency_key=str(uuid.uuid4()),
        )
        return Member(key, account)

    async def as_(self, member: Member, method, request, **kwargs):  # type: ignore[no-untyped-def]
        """`method` as `member` through the gateway: a proof of this very request."""
        if method.write:
            kwargs.setdefault("idempotency_key", str(uuid.uuid4()))
        proof_json, body = signed(member.key, member.account.account_id, method, request)
        kwargs.setdefault("proof", proof_json)
        kwargs.setdefault("signed_body", body)
        return await self.client.rpc.call(method, request, principal=member.principal, **kwargs)

    async def admin(self) -> Member:
        """The first administrator (bootstrapped once per namespace, by the operator)."""
        if self._admin is not None:
            return self._admin
        assert self.operator is not None
        token = await self.operator.rpc.call(
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
            service = await Runtime.start(
                "auth",
                settings,
                router=router,
                migrations=MIGRATIONS,
                on_startup=use_local_accounts,
            )
            client = await Runtime.start(
                f"{tag}-client", settings, use_database=False, identity=GATEWAY
            )
            operator = await Runtime.start(
                f"{tag}-operator", settings, use_database=False, identity=OPERATOR
            )
            observer = await Runtime.start(
                f"{tag}-observer",
                settings,
                use_database=False,
                consumers=client_consumers or [],
                identity="observer",
            )
            try:
                yield Identity(settings, service, keyvault, client, operator=operator)
            finally:
                await observer.stop()
                await operator.stop()
                await client.stop()
                await service.stop()
