"""mesh/proofs.py, as an attacker holding a captured signature sees it: a proof names one
operation, of one account, for a short while. Another body, another operation, another
service using it, an unknown, disabled or wrong key, a stale proof: all refused with
`Unauthenticated`, never served. Where a runtime keeps a ledger of proofs (the keyvault;
real Redis and RabbitMQ here), a proof is served once, and a replay after the ledger has
forgotten it is refused as stale."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import keyvault as kv
from contracts.auth import (
    ME,
    REGISTER,
    REGISTRATION_KEY_ID,
    Account,
    AccountRecord,
    AccountStatus,
    MeRequest,
    RegisterRequest,
)
from contracts.base import Role, RpcMethod
from contracts.http import target_of
from contracts.records import GET_PATIENT, GetPatientRequest
from mesh.context import CallContext
from mesh.errors import Unauthenticated
from mesh.httpsig import RequestProof, parse_proof, proof_from_headers, sign_request
from mesh.proofs import Operation, authorise, verify_operation
from mesh.redis import RedisLedger, create_redis
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.mesh.fixtures import SERVICE, EchoReply, EchoRequest, client_runtime
from tests.support.polling import until

ORIGIN = "http://gateway.test"
SETTINGS = Settings()


def raw_public(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@dataclass
class Accounts:
    """An AccountSource holding accounts as auth would serve them."""

    records: dict[str, AccountRecord] = field(default_factory=dict)

    async def get(self, account_id: str) -> AccountRecord | None:
        return self.records.get(account_id)

    def forget(self, account_id: str) -> None:
        self.records.pop(account_id, None)

    def add(self, key: Ed25519PrivateKey, status: AccountStatus = AccountStatus.active) -> str:
        now = datetime.now(UTC)
        account = Account(
            account_id=str(uuid.uuid4()),
            username=f"dr{len(self.records)}",
            display_name="Dr Test",
            role=Role.physician,
            status=status,
            public_key=raw_public(key),
            created_at=now,
            updated_at=now,
        )
        self.records[account.account_id] = AccountRecord(account=account, mac="unchecked")
        return account.account_id


KEY = Ed25519PrivateKey.generate()
PATIENT = GetPatientRequest(patient_id=str(uuid.uuid4()))


def signed(
    method: RpcMethod[Any, Any],
    request: Any,
    key_id: str,
    *,
    key: Ed25519PrivateKey = KEY,
    created: int | None = None,
) -> tuple[str, bytes]:
    verb, path, body = target_of(method, request)
    uri = f"{ORIGIN}{path}"
    headers = sign_request(key, key_id, verb, uri, body, created=created)
    return proof_from_headers(verb, uri, headers).model_dump_json(), body


async def refusal(proof: str | None, body: bytes, accounts: Accounts) -> str:
    with pytest.raises(Unauthenticated) as err:
        await verify_operation(proof, body, accounts, SETTINGS)
    return err.value.message


async def test_a_signed_operation_is_rebuilt_and_acts_as_its_signer() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    proof, body = signed(GET_PATIENT, PATIENT, account_id)
    operation = await verify_operation(proof, body, accounts, SETTINGS)
    assert operation.method is GET_PATIENT and operation.request == PATIENT
    assert operation.principal is not None
    assert operation.principal.account_id == account_id
    assert operation.principal.role is Role.physician
    authorise(GET_PATIENT, PATIENT, operation, caller="gateway")


async def test_without_a_proof_or_with_a_malformed_one_nothing_is_served() -> None:
    accounts = Accounts()
    accounts.add(KEY)
    assert "needs the user's forwarded" in await refusal(None, b"", accounts)
    for junk in ("", "{}", "null", "[1]", '{"method": "GET"}', "\x00" * 10):
        await refusal(junk, b"", accounts)


async def test_the_key_must_be_known_active_and_the_one_that_signed() -> None:
    accounts = Accounts()
    active = accounts.add(KEY)
    disabled = accounts.add(KEY, AccountStatus.disabled)
    proof, body = signed(GET_PATIENT, PATIENT, str(uuid.uuid4()))
    assert "not known" in await refusal(proof, body, accounts)
    proof, body = signed(GET_PATIENT, PATIENT, disabled)
    assert "disabled" in await refusal(proof, body, accounts)
    proof, body = signed(GET_PATIENT, PATIENT, active, key=Ed25519PrivateKey.generate())
    await refusal(proof, body, accounts)


async def test_an_account_with_a_broken_public_key_refuses_rather_than_raises() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    record = accounts.records[account_id]
    proof, body = signed(GET_PATIENT, PATIENT, account_id)
    for bad in ("not base64!", base64.b64encode(b"short").decode(), ""):
        account = record.account.model_copy(update={"public_key": bad})
        accounts.records[account_id] = AccountRecord(account=account, mac="unchecked")
        await refusal(proof, body, accounts)


async def test_a_stale_or_future_proof_is_refused() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    now = int(time.time())
    for created in (now - int(SETTINGS.signature_window_s) - 5, now + 3600):
        proof, body = signed(GET_PATIENT, PATIENT, account_id, created=created)
        await refusal(proof, body, accounts)


async def test_another_body_than_the_signed_one_is_refused() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    proof, _ = signed(GET_PATIENT, PATIENT, account_id)
    assert "Content-Digest" in await refusal(proof, b'{"patient_id": "x"}', accounts)


async def test_a_proof_serves_only_its_own_operation() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    proof, body = signed(GET_PATIENT, PATIENT, account_id)
    operation = await verify_operation(proof, body, accounts, SETTINGS)
    other_patient = GetPatientRequest(patient_id=str(uuid.uuid4()))
    with pytest.raises(Unauthenticated):
        authorise(GET_PATIENT, other_patient, operation, caller="gateway")
    with pytest.raises(Unauthenticated):
        authorise(ME, MeRequest(), operation, caller="gateway")


async def test_on_behalf_only_the_service_of_the_signed_operation_may_use_it() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    proof, body = signed(GET_PATIENT, PATIENT, account_id)
    operation = await verify_operation(proof, body, accounts, SETTINGS)
    decrypt = kv.DecryptRequest(rows=[])
    authorise(kv.DECRYPT, decrypt, operation, caller="records")
    for caller in ("chat", "scheduling", "gateway", None):
        with pytest.raises(Unauthenticated):
            authorise(kv.DECRYPT, decrypt, operation, caller=caller)


async def test_a_registration_is_signed_by_the_new_key_under_its_own_key_id() -> None:
    new_key = Ed25519PrivateKey.generate()
    request = RegisterRequest(
        token="t" * 20, username="newdoc", display_name="New", public_key=raw_public(new_key)
    )
    accounts = Accounts()
    proof, body = signed(REGISTER, request, REGISTRATION_KEY_ID, key=new_key)
    operation = await verify_operation(proof, body, accounts, SETTINGS)
    assert operation.account is None and operation.principal is None
    # signed by any other key than the one it registers: refused
    proof, body = signed(REGISTER, request, REGISTRATION_KEY_ID, key=KEY)
    await refusal(proof, body, accounts)
    # a registration under an account's key id: refused
    account_id = accounts.add(new_key)
    proof, body = signed(REGISTER, request, account_id, key=new_key)
    assert REGISTRATION_KEY_ID in await refusal(proof, body, accounts)


async def test_a_replay_has_the_same_once_key_and_a_fresh_signature_another() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    proof, body = signed(GET_PATIENT, PATIENT, account_id)
    first: Operation = await verify_operation(proof, body, accounts, SETTINGS)
    replay = await verify_operation(proof, body, accounts, SETTINGS)
    assert first.once_key == replay.once_key
    fresh_proof, _ = signed(GET_PATIENT, PATIENT, account_id)
    fresh = await verify_operation(fresh_proof, body, accounts, SETTINGS)
    assert fresh.once_key != first.once_key
    assert first.once_key.startswith(f"{account_id}:")


async def test_a_route_that_does_not_exist_or_an_invalid_request_is_refused() -> None:
    accounts = Accounts()
    account_id = accounts.add(KEY)
    for uri in (f"{ORIGIN}/api/v1/nowhere", f"{ORIGIN}/api/v1/patients/not-a-uuid"):
        headers = sign_request(KEY, account_id, "GET", uri, b"")
        proof = proof_from_headers("GET", uri, headers).model_dump_json()
        assert "not a valid request" in await refusal(proof, b"", accounts)


FOR_USER = RpcMethod(
    SERVICE, "testsvc.for_user", EchoRequest, EchoReply, on_behalf=True, callers=None
)


async def test_with_a_ledger_a_proof_is_served_once_and_never_after_it_is_forgotten(
    settings: Settings,
) -> None:
    cfg = settings.model_copy(update={"signature_window_s": 2.0, "signature_skew_s": 0.5})
    accounts, redis = Accounts(), create_redis(cfg)
    account_id = accounts.add(KEY)
    prefix = f"{cfg.redis_prefix}proofs-test:{uuid.uuid4().hex[:8]}:"
    ttl_s = cfg.signature_window_s + cfg.signature_skew_s + 1  # as the keyvault keeps it

    async def keep_a_ledger(runtime: Runtime) -> None:
        runtime.accounts = accounts
        runtime.ledger = RedisLedger(redis, prefix, ttl_s)

    router = RpcRouter(SERVICE)

    @router.handler(FOR_USER)
    async def for_user(req: EchoRequest, ctx: CallContext) -> EchoReply:
        return EchoReply(text=req.text, instance="")

    service = await Runtime.start(
        SERVICE, cfg, router=router, on_startup=keep_a_ledger, use_database=False
    )
    try:
        async with client_runtime(cfg, "records-stand-in", identity="records") as records:
            proof, body = signed(GET_PATIENT, PATIENT, account_id)

            async def call() -> EchoReply:
                return await records.rpc.call(
                    FOR_USER, EchoRequest(text="x"), proof=proof, signed_body=body
                )

            assert (await call()).text == "x"
            with pytest.raises(Unauthenticated, match="already used"):
                await call()
            nonce = parse_proof(RequestProof.model_validate_json(proof)).nonce
            claim = f"{prefix}{account_id}:{nonce}:{FOR_USER.name}"
            assert await redis.exists(claim)
            await until(lambda: _gone(redis, claim), timeout=ttl_s + 3)
            with pytest.raises(Unauthenticated, match="old"):
                await call()
    finally:
        await service.stop()
        await redis.aclose()


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)
