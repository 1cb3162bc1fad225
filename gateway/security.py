"""The gateway's checks on every signed request, in order, failing closed.

1. the RFC 9421 signature headers are present and well formed;
2. the key id is a known, active account whose row MAC verifies (asked of auth, which asks
   the keyvault; cached briefly and dropped at once on `auth.account.changed`);
3. the body matches Content-Digest, `created` is fresh, the Ed25519 signature verifies;
4. the nonce was never seen (remembered in Redis for the freshness window);
5. the account's token bucket (and, for patient data, the stricter one) has a token.

Redis unreachable means 503, never a request let through unchecked. Each refusal is
audited. The verified principal and the signature material travel with every RPC.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from fastapi import Request
from redis.asyncio import Redis
from starlette.datastructures import URL
from starlette.types import Scope

from contracts import auth
from contracts.audit import AuditAction, AuditOutcome, AuditType
from contracts.auth import AccountStatus
from contracts.base import Principal
from gateway.errors import ApiError
from gateway.ratelimit import Bucket, Decision, RateLimiter, nonce_key
from gateway.settings import GatewaySettings
from mesh import audit
from mesh.errors import IntegrityError, NotFound, RpcError
from mesh.httpsig import (
    ParsedSignature,
    RequestProof,
    SignatureError,
    SignatureReason,
    parse_proof,
    proof_from_headers,
    verify_proof,
)
from mesh.logging import get_logger
from mesh.redis import REDIS_UNAVAILABLE, describe
from mesh.runtime import Runtime

log = get_logger("gateway.security")
SOURCE = "gateway"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
RETRY_AFTER_UNAVAILABLE_S = 5
"""A Redis failover takes a few seconds (Sentinel notices, then promotes a replica)."""
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{8,100}")


@dataclass(frozen=True)
class Caller:
    """A verified request: who signed it, and the material to forward to services."""

    principal: Principal
    proof: RequestProof
    nonce: str
    decision: Decision | None = None
    body: bytes = b""
    """The signed body as the client sent it (forwarded: services check its digest)."""
    client_key: str | None = None
    """The client's `Idempotency-Key` header, if it sent one (to retry a write safely)."""

    @property
    def proof_json(self) -> str:
        return self.proof.model_dump_json()

    @property
    def idempotency_key(self) -> str:
        """The client's key if given (a retry with a new signature then writes once), else
        unique per signed request (a nonce is never accepted twice); per account either way."""
        return f"{self.principal.account_id}:{self.client_key or self.nonce}"


@dataclass
class _CachedKey:
    account: auth.Account
    until: float


class Security:
    def __init__(self, runtime: Runtime, redis: Redis, settings: GatewaySettings) -> None:
        self.runtime = runtime
        self.redis = redis
        self.settings = settings
        prefix = runtime.settings.redis_prefix
        self.prefix = prefix
        self.limiter = RateLimiter(redis, prefix)
        self.general = Bucket(
            "general", settings.rate_general_capacity, settings.rate_general_per_s
        )
        self.patient = Bucket(
            "patient-data", settings.rate_patient_capacity, settings.rate_patient_per_s
        )
        self.anonymous = Bucket(
            "anonymous", settings.rate_anonymous_capacity, settings.rate_anonymous_per_s
        )
        self._keys: dict[str, _CachedKey] = {}

    def forget(self, account_id: str) -> None:
        self._keys.pop(account_id, None)

    # ---------------------------------------------------------------- pieces

    async def body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        body = await request.body()
        if len(body) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        if request.method in BODY_METHODS:
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != "application/json":
                raise ApiError(415, "send the body as application/json")
        return body

    async def account(self, account_id: str) -> auth.Account:
        cached = self._keys.get(account_id)
        if cached is not None and cached.until > time.monotonic():
            return cached.account
        try:
            record = await self.runtime.rpc.call(
                auth.RESOLVE_KEY, auth.ResolveKeyRequest(account_id=account_id)
            )
        except (NotFound, IntegrityError):
            raise SignatureError(SignatureReason.unknown_key) from None
        self._keys[account_id] = _CachedKey(
            record.account, time.monotonic() + self.settings.key_cache_s
        )
        return record.account

    def _nonce_key(self, key_id: str, nonce: str) -> tuple[str, int]:
        window = self.runtime.settings.signature_window_s + self.runtime.settings.signature_skew_s
        return nonce_key(self.prefix, key_id, nonce), int(window) + 1

    async def _check_limits(
        self, buckets: list[tuple[Bucket, str]], principal: Principal | None, nonce: str = ""
    ) -> Decision | None:
        """One Redis round trip: the nonce (if given) is new, then a token from each bucket;
        a replayed nonce raises `replayed`, an empty bucket 429. Redis down: 503."""
        key, ttl = self._nonce_key(principal.account_id if principal else "", nonce)
        try:
            check = await self.limiter.check(
                buckets, nonce_key=key if nonce else "", nonce_ttl_s=ttl
            )
        except REDIS_UNAVAILABLE as exc:
            raise _unavailable(exc) from None
        if not check.fresh:
            raise SignatureError(SignatureReason.replayed)
        decision = check.decisions[-1] if check.decisions else None
        if decision is not None and not decision.allowed:
            bucket = decision.bucket
            await self.refusal(
                AuditType.gateway_rate_limited, f"bucket {bucket.name} empty", principal=principal
            )
            raise ApiError(
                429,
                f"too many requests: the {bucket.name} limit is {bucket.capacity} at once, "
                f"refilled at {bucket.rate:g} per second",
                code="rate_limited",
                headers=decision.headers(),
            )
        return decision

    async def remember_nonce(self, key_id: str, nonce: str) -> None:
        key, ttl = self._nonce_key(key_id, nonce)
        try:
            fresh = await self.redis.set(key, b"1", nx=True, ex=ttl)
        except REDIS_UNAVAILABLE as exc:
            raise _unavailable(exc) from None
        if not fresh:
            raise SignatureError(SignatureReason.replayed)

    async def take(self, bucket: Bucket, subject: str, principal: Principal | None) -> Decision:
        decision = await self._check_limits([(bucket, subject)], principal)
        assert decision is not None
        return decision

    async def refusal(
        self,
        type: AuditType,
        detail: str,
        *,
        principal: Principal | None = None,
        address: str | None = None,
    ) -> None:
        """Audit a refusal; best effort (a refusal is already the safe outcome)."""
        event = audit.make_event(
            SOURCE,
            type,
            AuditAction.execute,
            AuditOutcome.refused,
            principal=principal,
            address=address,
            detail=detail,
        )
        try:
            await audit.record(self.runtime, event)
        except RpcError:
            log.warning("gateway.refusal_not_audited", type=type)

    @asynccontextmanager
    async def _signature_refusals(self, address: str | None) -> AsyncIterator[None]:
        """A `SignatureError` of the checks inside is audited as a refusal, then raised."""
        try:
            yield
        except SignatureError as exc:
            await self.refusal(
                AuditType.gateway_signature_refused,
                f"{exc.reason.value}: {exc.message}",
                address=address,
            )
            raise

    # ---------------------------------------------------------------- requests

    async def verify(self, request: Request, *, patient_data: bool = False) -> Caller:
        body = await self.body(request)
        address = request.client.host if request.client else None
        client_key = request.headers.get("idempotency-key")
        if client_key is not None and not IDEMPOTENCY_KEY.fullmatch(client_key):
            raise ApiError(400, "Idempotency-Key must be 8 to 100 letters, digits, - or _")
        caller = await self.verify_signed(
            request.method,
            signed_target(request.scope, request.url),
            request.headers,
            body,
            address,
            patient_data,
        )
        return replace(caller, client_key=client_key) if client_key else caller

    async def verify_signed(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        address: str | None,
        patient_data: bool = False,
    ) -> Caller:
        """The checks of a signed request (or WebSocket handshake, signed as a GET)."""
        async with self._signature_refusals(address):
            proof = proof_from_headers(method, url, headers)
            parsed = parse_proof(proof)
            account = await self.account(parsed.key_id)
            if account.status is not AccountStatus.active:
                raise SignatureError(SignatureReason.disabled)
            self._check(proof, account.public_key, body)
            principal = Principal(
                account_id=account.account_id, role=account.role, username=account.username
            )
            buckets = [(self.general, account.account_id)]
            if patient_data:
                buckets.append((self.patient, account.account_id))
            # The nonce is remembered (once the signature verified) and the buckets taken
            # in one round trip; a replay takes no token.
            decision = await self._check_limits(buckets, principal, parsed.nonce)
        return Caller(principal, proof, parsed.nonce, decision, body)

    def _check(self, proof: RequestProof, public_key: str, body: bytes) -> ParsedSignature:
        settings = self.runtime.settings
        return verify_proof(
            proof,
            base64.b64decode(public_key),
            now=time.time(),
            window_s=settings.signature_window_s,
            skew_s=settings.signature_skew_s,
            body=body,
        )

    async def verify_registration(self, request: Request, public_key: str) -> RequestProof:
        """A registration is signed by the new key itself (proof of possession)."""
        body = await self.body(request)
        address = request.client.host if request.client else "unknown"
        await self.take(self.anonymous, f"addr:{address}", None)
        async with self._signature_refusals(address):
            target = signed_target(request.scope, request.url)
            proof = proof_from_headers(request.method, target, request.headers)
            parsed = parse_proof(proof)
            if parsed.key_id != auth.REGISTRATION_KEY_ID:
                raise SignatureError(
                    SignatureReason.unknown_key,
                    f'registration uses keyid "{auth.REGISTRATION_KEY_ID}"',
                )
            try:
                self._check(proof, public_key, body)
            except ValueError:
                raise SignatureError(SignatureReason.bad_signature) from None
            await self.remember_nonce(parsed.key_id, parsed.nonce)
        return proof

    async def anonymous_request(self, request: Request) -> None:
        """Unauthenticated routes that still cost something (unseal): a per-address bucket."""
        await self.body(request)
        address = request.client.host if request.client else "unknown"
        await self.take(self.anonymous, f"addr:{address}", None)


def signed_target(scope: Scope, url: URL) -> str:
    """The target URI as the client sent it: scheme and authority, then the raw path and
    raw query, percent-encoding kept (RFC 9421 §2.2.2), so any client can sign any path."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) and raw else url.path
    query = scope.get("query_string", b"")
    text = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    return f"{url.scheme}://{url.netloc}{path}" + (f"?{text}" if text else "")


def _unavailable(exc: BaseException) -> ApiError:
    log.error("gateway.redis_unavailable", error=describe(exc))
    return ApiError(
        503,
        "Medihaven cannot check requests safely at the moment (its security store is "
        "switching to a standby server or cannot be reached), so nothing was done; "
        "please try again in a few seconds.",
        code="unavailable",
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
    )
