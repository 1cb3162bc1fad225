"""A user's signature authorises one operation, once: verified by every service, not only
the gateway (DESIGN §3a).

The gateway forwards the RFC 9421 proof (and the signed body) with each RPC it makes for
a user. The runtime of the receiving service, before any handler runs
(`mesh.rpc.RpcServer`), rebuilds from that material alone which operation the user
signed (`contracts.common.routes`, `contracts.http.build_request`), checks the signature
with the signer's registered key (`AccountSource`: row MAC verified), its freshness and
the body's digest, and derives the acting principal from the signing account, never from
a header. A method served for its own route must then receive exactly the request that
was signed; a method served on behalf of an operation (keyvault decrypt) must be called
by the service that serves that operation, and bounds what it does by the operation's
`Grant`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from contracts.auth import REGISTRATION_KEY_ID, Account, AccountRecord, AccountStatus
from contracts.base import Principal, RpcMethod
from contracts.common import routes, served_by
from contracts.http import RouteError, build_request
from mesh.errors import RpcError, Unauthenticated
from mesh.httpsig import (
    ParsedSignature,
    RequestProof,
    SignatureError,
    content_digest,
    parse_proof,
    verify_proof,
)
from mesh.settings import Settings


class AccountSource(Protocol):
    """Where a service looks up a signer's account (its row MAC verified), or None."""

    async def get(self, account_id: str) -> AccountRecord | None: ...

    def forget(self, account_id: str) -> None: ...


class ProofLedger(Protocol):
    """Remembers signed requests already served (the keyvault's, across its replicas)."""

    async def claim(self, key: str) -> bool:
        """True the first time `key` is claimed (within the signature window), else False;
        raises if the ledger cannot be reached (the caller then refuses: closed)."""
        ...


@dataclass(frozen=True)
class Operation:
    """The operation a user signed, rebuilt from the forwarded proof alone."""

    method: RpcMethod[Any, Any]
    request: BaseModel
    signature: ParsedSignature
    account: Account | None
    """The signer's account (None for a registration, signed by the new key)."""

    @property
    def principal(self) -> Principal | None:
        if self.account is None:
            return None
        return Principal(
            account_id=self.account.account_id,
            role=self.account.role,
            username=self.account.username,
        )

    @property
    def once_key(self) -> str:
        """What identifies this signed request for single use (key id and nonce)."""
        return f"{self.signature.key_id}:{self.signature.nonce}"


def _refused(message: str) -> RpcError:
    return Unauthenticated(f"request signature refused: {message}")


async def verify_operation(
    proof_json: str | None, body: bytes, accounts: AccountSource, settings: Settings
) -> Operation:
    """The signed operation of a forwarded proof, or `Unauthenticated` saying why not."""
    if proof_json is None:
        raise Unauthenticated("this operation needs the user's forwarded request signature")
    try:
        proof = RequestProof.model_validate_json(proof_json)
        parsed = parse_proof(proof)
    except ValidationError:
        raise Unauthenticated("the forwarded request signature is malformed") from None
    except SignatureError as exc:
        raise _refused(exc.message) from None
    if not hmac.compare_digest(proof.content_digest, content_digest(body)):
        raise _refused("the forwarded body does not match the signed Content-Digest")
    try:
        method, params, query = routes().operation_of(proof.method, proof.target_uri)
        request = build_request(method, params, query, body)
    except (RouteError, ValidationError):
        raise _refused("the signed request is not a valid request of any route") from None
    assert method.route is not None
    account: Account | None = None
    if method.route.signer == "new_key":
        if parsed.key_id != REGISTRATION_KEY_ID:
            raise _refused(f'a registration is signed with keyid "{REGISTRATION_KEY_ID}"')
        public_key = _key_bytes(getattr(request, "public_key", ""))
    else:
        record = await accounts.get(parsed.key_id)
        if record is None:
            raise _refused("the signing key is not known")
        account = record.account
        if account.status is not AccountStatus.active:
            raise _refused("the signing account is disabled")
        public_key = _key_bytes(account.public_key)
    try:
        verify_proof(
            proof,
            public_key,
            now=time.time(),
            window_s=settings.signature_window_s,
            skew_s=settings.signature_skew_s,
        )
    except SignatureError as exc:
        raise _refused(exc.message) from None
    return Operation(method, request, parsed, account)


def _key_bytes(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _refused("the signing key is not valid base64") from None
    if len(raw) != 32:
        raise _refused("the signing key is not an Ed25519 public key")
    return raw


def authorise(
    method: RpcMethod[Any, Any], request: BaseModel, operation: Operation, caller: str | None
) -> None:
    """The proof's operation may be used for this call (see the module docstring)."""
    if method.route is not None:
        if operation.method is not method or operation.request != request:
            raise _refused(
                f"the signature was made for {operation.method.route_text}, "
                f"not for this {method.name} request"
            )
        return
    if caller is None or served_by(operation.method.service) != caller:
        raise _refused(
            f"a signature for {operation.method.name} cannot be used by {caller or 'an unknown'}"
        )
