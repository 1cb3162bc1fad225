"""No oracles: an attacker who has taken over one service (or the gateway) asks the
keyvault, over the bus, for what only another service, or a user's signed operation,
may have.

- encrypt, MAC and verify are served only to the service that owns the row's table;
- staff-account and registration-token rows are never MAC'd on request, not even for
  auth (whoever holds a valid account row MAC is a member of staff);
- an account row is MAC'd for a registration only as the signed request asks, with the
  role of a genuine token row, for the key that signed;
- a token row is MAC'd only for an administrator's signed issue, with the role signed;
- the operator's first administrator token only until an administrator registered.

Each refusal is checked next to the same call made rightly, which succeeds.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from contracts import auth as au
from contracts import chat as ch
from contracts import keyvault as kv
from contracts import records as rc
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.auth import Account, AccountStatus, TokenRow, account_mac_row, token_mac_row
from contracts.base import OPERATOR, Role, RpcMethod
from mesh.errors import Conflict, Forbidden, RpcError, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.runtime import ConsumerSpec, Runtime
from services.keyvault.state import vault_of
from services.keyvault.vault import Vault
from tests.auth.support import public_key_of, signed
from tests.support.clinic import Clinic, StaffMember, clinic

AUDITS: list[AuditEvent] = []
CALLERS = ("records", "scheduling", "chat", "audit", "auth")


def collect(_: Runtime):  # type: ignore[no-untyped-def]
    async def handle(event: ReceivedEvent[AuditEvent]) -> None:
        AUDITS.append(event.payload)

    return handle


@dataclass
class Mesh:
    clinic: Clinic
    as_: dict[str, Runtime]
    """A process connected with each service's broker identity, and the gateway's."""

    @property
    def vault(self) -> Vault:
        vault: Vault = vault_of(self.clinic.keyvault)
        return vault


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[Mesh]:
    consumers = [ConsumerSpec("oracletest-audit", [AUDIT_RECORDED], collect)]
    async with clinic("kvoracle", client_consumers=consumers) as c:
        runtimes: dict[str, Runtime] = {"gateway": c.client}
        try:
            for identity in (*CALLERS, OPERATOR):
                runtimes[identity] = await Runtime.start(
                    f"kvoracle-{identity}", c.settings, use_database=False, identity=identity
                )
            yield Mesh(c, runtimes)
        finally:
            for identity, runtime in runtimes.items():
                if identity != "gateway":
                    await runtime.stop()


async def audited(type: str, since: int) -> bool:
    for _ in range(100):
        if any(a.type == type for a in AUDITS[since:]):
            return True
        await asyncio.sleep(0.05)
    return False


def mac_row(table: str, pk: str = "row-1") -> kv.MacRow:
    return kv.MacRow(table=table, pk=pk, columns=[("status", "active")])


def field_row(table: str, row_id: str = "row-1") -> kv.FieldRow:
    return kv.FieldRow(table=table, row_id=row_id, fields={"text": "secret"})


async def refused(
    world: Mesh, identity: str, method: RpcMethod[Any, Any], request: BaseModel, **kwargs: Any
) -> RpcError:
    """The call as `identity` is refused with Forbidden (and the error, to look at)."""
    with pytest.raises(Forbidden) as err:
        await world.as_[identity].rpc.call(method, request, **kwargs)
    return err.value


# ---------------------------------------------------------------- (a) table owners


async def test_encrypt_mac_and_verify_only_for_the_table_owner(world: Mesh) -> None:
    rx = mac_row("prescriptions")
    # rightly: records owns prescriptions, chat owns messages
    (tag,) = (await world.as_["records"].rpc.call(kv.MAC, kv.MacRequest(rows=[rx]))).tags
    verified = await world.as_["records"].rpc.call(
        kv.VERIFY_MAC, kv.VerifyMacRequest(rows=[rx], tags=[tag])
    )
    assert verified.valid == [True]
    await world.as_["chat"].rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[field_row("messages")]))

    # chat (taken over) asks for a prescription row: refused, as a caller or as an owner
    before = len(AUDITS)
    await refused(world, "chat", kv.MAC, kv.MacRequest(rows=[rx]))
    assert await audited("bus.call_refused", before)
    await refused(world, "chat", kv.VERIFY_MAC, kv.VerifyMacRequest(rows=[rx], tags=[tag]))
    error = await refused(
        world, "chat", kv.ENCRYPT, kv.EncryptRequest(rows=[field_row("prescriptions")])
    )
    assert "only to its own service" in error.message
    # services that may call MAC / VERIFY_MAC / ENCRYPT at all, for another's table
    await refused(world, "audit", kv.MAC, kv.MacRequest(rows=[rx]))
    await refused(world, "records", kv.MAC, kv.MacRequest(rows=[mac_row("messages")]))
    await refused(world, "auth", kv.VERIFY_MAC, kv.VerifyMacRequest(rows=[rx], tags=[tag]))
    await refused(world, "audit", kv.VERIFY_MAC, kv.VerifyMacRequest(rows=[rx], tags=[tag]))
    await refused(world, "scheduling", kv.ENCRYPT, kv.EncryptRequest(rows=[field_row("patients")]))
    await refused(world, "chat", kv.ENCRYPT, kv.EncryptRequest(rows=[field_row("appointments")]))
    # one row of another's table spoils the whole batch
    mixed = [field_row("patients"), field_row("messages", "row-2")]
    await refused(world, "records", kv.ENCRYPT, kv.EncryptRequest(rows=mixed))
    # no verify oracle on staff rows for anyone but auth (a forged row tested offline)
    staff = mac_row("staff_accounts")
    for identity in ("records", "audit"):
        await refused(world, identity, kv.VERIFY_MAC, kv.VerifyMacRequest(rows=[staff], tags=[tag]))
    # a table nobody owns is nobody's
    for identity in ("records", "chat", "scheduling"):
        await refused(world, identity, kv.ENCRYPT, kv.EncryptRequest(rows=[field_row("t")]))


async def test_the_gateway_gets_no_cryptography_at_all(world: Mesh) -> None:
    rx = mac_row("prescriptions")
    token = bootstrap_token()
    calls: list[tuple[RpcMethod[Any, Any], BaseModel]] = [
        (kv.ENCRYPT, kv.EncryptRequest(rows=[field_row("patients")])),
        (kv.DECRYPT, kv.DecryptRequest(rows=[])),
        (kv.MAC, kv.MacRequest(rows=[rx])),
        (kv.VERIFY_MAC, kv.VerifyMacRequest(rows=[rx], tags=["x"])),
        (kv.BLIND_INDEX, kv.BlindIndexRequest(queries=[])),
        (kv.MAC_TOKEN, kv.MacTokenRequest(token=token)),
        (kv.MAC_BOOTSTRAP_TOKEN, kv.MacTokenRequest(token=token)),
    ]
    for method, request in calls:
        before = len(AUDITS)
        await refused(world, "gateway", method, request)
        assert await audited("bus.call_refused", before), method.name


async def test_decrypt_serves_only_the_owner_of_the_signed_operation_tables(
    world: Mesh,
) -> None:
    """chat, with a member's genuine signed chat operation, asks for patients rows."""
    member = await world.clinic.add_staff("chatty", Role.physician)
    patient = str(uuid.uuid4())
    (fields,) = await world.clinic.encrypt(
        [
            kv.FieldRow(
                table="patients",
                row_id=patient,
                fields={"family_name": "Okafor"},
                binding={"patient": patient},
            )
        ]
    )
    row = kv.FieldRow(table="patients", row_id=patient, fields=fields, binding={"patient": patient})
    proof, body = member.signed(ch.LIST_CONVERSATIONS, ch.ListConversationsRequest())
    await refused(
        world, "chat", kv.DECRYPT, kv.DecryptRequest(rows=[row]), proof=proof, signed_body=body
    )


# ------------------------------------------------- role of the signer (on behalf)


async def test_a_signer_whose_role_may_not_do_the_operation_gets_nothing(world: Mesh) -> None:
    """Records (taken over) holds a receptionist's, or an administrator's, signed request
    for a physicians-only operation (a patient's encounters): the keyvault decrypts
    nothing for it, as records itself would have refused the operation."""
    patient = str(uuid.uuid4())
    (fields,) = await world.clinic.encrypt(
        [
            kv.FieldRow(
                table="encounter_versions",
                row_id="enc-1",
                fields={"note": "private"},
                binding={"patient": patient},
            )
        ]
    )
    row = kv.FieldRow(
        table="encounter_versions", row_id="enc-1", fields=fields, binding={"patient": patient}
    )
    for name, role in (("desk-enc", Role.receptionist), ("admin-enc", Role.administrator)):
        member = await world.clinic.add_staff(name, role)
        proof, body = member.signed(
            rc.LIST_ENCOUNTERS, rc.ListEncountersRequest(patient_id=patient)
        )
        before = len(AUDITS)
        await refused(
            world,
            "records",
            kv.DECRYPT,
            kv.DecryptRequest(rows=[row]),
            proof=proof,
            signed_body=body,
        )
        assert await audited("vault.grant_refused", before), name
    # nor blind indexes for a search the signer's role may not make
    admin = await world.clinic.add_staff("admin-search", Role.administrator)
    search = rc.SearchPatientsRequest(phone="+44 20 7946 0958")
    proof, body = admin.signed(rc.SEARCH_PATIENTS, search)
    query = kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone", value=search.phone or "")])
    await refused(
        world,
        "records",
        kv.BLIND_INDEX,
        kv.BlindIndexRequest(queries=[query]),
        proof=proof,
        signed_body=body,
    )


# ------------------------------------------------ (b) account rows are not MAC'd


async def test_staff_and_token_rows_are_never_macd_on_request(world: Mesh) -> None:
    for table in (au.ACCOUNTS_TABLE, au.TOKENS_TABLE):
        for identity in ("auth", "records", "audit"):
            await refused(world, identity, kv.MAC, kv.MacRequest(rows=[mac_row(table)]))
    # nor hidden among rows that may be MAC'd
    mixed = [mac_row("prescriptions"), mac_row(au.ACCOUNTS_TABLE)]
    await refused(world, "records", kv.MAC, kv.MacRequest(rows=mixed))


# ---------------------------------------------------------- (c) registrations


def now() -> datetime:
    return datetime.now(UTC)


def pending_token(role: Role, text: str, issued_by: str | None = "acc-issuer") -> TokenRow:
    created = now()
    return TokenRow(
        token_id=str(uuid.uuid4()),
        token_hash=au.token_hash(text),
        role=role,
        expires_at=created + timedelta(hours=72),
        issued_by=issued_by,
        created_at=created,
    )


async def stored_token(world: Mesh, role: Role) -> tuple[str, TokenRow, str]:
    """A token as auth stores it: (the token itself, its row, the row's genuine MAC)."""
    text = secrets.token_urlsafe(16)
    token = pending_token(role, text)
    (tag,) = await world.vault.mac([token_mac_row(token)])
    return text, token, tag


@dataclass
class Registration:
    key: Ed25519PrivateKey
    request: au.RegisterRequest
    account: Account
    """The account row auth would store for this request, with `role`."""


def registration(text: str, role: Role, key: Ed25519PrivateKey | None = None) -> Registration:
    key = key or Ed25519PrivateKey.generate()
    request = au.RegisterRequest(
        token=text,
        username=f"new-{uuid.uuid4().hex[:8]}",
        display_name="New Member",
        public_key=public_key_of(key),
    )
    stamp = now()
    account = Account(
        account_id=str(uuid.uuid4()),
        username=request.username,
        display_name=request.display_name,
        role=role,
        status=AccountStatus.active,
        public_key=request.public_key,
        created_at=stamp,
        updated_at=stamp,
    )
    return Registration(key, request, account)


async def mac_account(
    world: Mesh,
    reg: Registration,
    token: TokenRow,
    tag: str,
    *,
    account: Account | None = None,
    signer: Ed25519PrivateKey | None = None,
) -> kv.MacAccountReply:
    """MAC_ACCOUNT as auth asks it while serving the registration (signed by the new key,
    or by `signer`)."""
    proof, body = signed(signer or reg.key, au.REGISTRATION_KEY_ID, au.REGISTER, reg.request)
    return await world.as_["auth"].rpc.call(
        kv.MAC_ACCOUNT,
        kv.MacAccountRequest(account=account or reg.account, token=token, token_mac=tag),
        proof=proof,
        signed_body=body,
    )


async def test_a_registration_is_macd_only_as_signed_with_the_tokens_role(world: Mesh) -> None:
    # rightly: a physician's token, the account the new key signed for
    text, token, tag = await stored_token(world, Role.physician)
    reg = registration(text, Role.physician)
    reply = await mac_account(world, reg, token, tag)
    assert await world.vault.verify_one(account_mac_row(reg.account), reply.account_mac)
    assert reply.token is not None and reply.token.used_by == reg.account.account_id

    text, token, tag = await stored_token(world, Role.physician)
    # 1. a role other than the token's (the registration asks to be an administrator)
    reg = registration(text, Role.administrator)
    with pytest.raises(Forbidden):
        await mac_account(world, reg, token, tag)
    # 2. a token row whose MAC is bad: another row's, garbage, or the row edited
    reg = registration(text, Role.physician)
    _, _, other_tag = await stored_token(world, Role.physician)
    for bad in (other_tag, "bm90IGEgdGFn"):
        with pytest.raises(Unauthenticated, match="integrity"):
            await mac_account(world, reg, token, bad)
    promoted = token.model_copy(update={"role": Role.administrator})
    with pytest.raises(Unauthenticated, match="integrity"):
        await mac_account(world, registration(text, Role.administrator), promoted, tag)
    # 3. an account whose public key is not the one that signed
    attacker = Ed25519PrivateKey.generate()
    swapped = reg.account.model_copy(update={"public_key": public_key_of(attacker)})
    with pytest.raises(Forbidden):
        await mac_account(world, reg, token, tag, account=swapped)
    # ... or a registration of the attacker's key that the new key did not sign
    # (refused by the runtime with the proof: audited)
    reg_of_attacker = registration(text, Role.physician, key=attacker)
    before = len(AUDITS)
    with pytest.raises(Unauthenticated):
        await mac_account(world, reg_of_attacker, token, tag, signer=Ed25519PrivateKey.generate())
    assert await audited("bus.signature_refused", before)
    # 4. a genuine row of another token than the one signed
    _, elsewhere, elsewhere_tag = await stored_token(world, Role.physician)
    with pytest.raises(Unauthenticated):
        await mac_account(world, reg, elsewhere, elsewhere_tag)
    # the token was never spent by any of the above: its holder still registers
    reply = await mac_account(world, reg, token, tag)
    assert reply.token is not None and reply.token.used_by == reg.account.account_id
    # ... once: the used row is not pending any more
    assert reply.token_mac is not None
    again = registration(text, Role.physician)
    with pytest.raises(Unauthenticated):
        await mac_account(world, again, reply.token, reply.token_mac)


# ---------------------------------------------------------------- (d) tokens


def issued_token(signer: StaffMember, request: au.IssueTokenRequest, **changes: Any) -> TokenRow:
    created = now()
    token = TokenRow(
        token_id=str(uuid.uuid4()),
        token_hash=au.token_hash(secrets.token_urlsafe(16)),
        role=request.role,
        expires_at=created + timedelta(hours=request.expires_hours),
        issued_by=signer.account_id,
        created_at=created,
    )
    return token.model_copy(update=changes)


async def mac_token(
    world: Mesh,
    signer: StaffMember,
    request: BaseModel,
    token: TokenRow,
    method: RpcMethod[Any, Any] = au.ISSUE_TOKEN,
    identity: str = "auth",
) -> kv.MacReply:
    proof, body = signer.signed(method, request)
    return await world.as_[identity].rpc.call(
        kv.MAC_TOKEN, kv.MacTokenRequest(token=token), proof=proof, signed_body=body
    )


async def test_a_token_is_macd_only_for_an_administrators_signed_issue(world: Mesh) -> None:
    admin = await world.clinic.add_staff("token-admin", Role.administrator)
    doctor = await world.clinic.add_staff("token-doctor", Role.physician)
    issue = au.IssueTokenRequest(role=Role.physician)
    # rightly
    reply = await mac_token(world, admin, issue, issued_token(admin, issue))
    assert len(reply.tags) == 1
    # 1. a signer who is not an administrator
    with pytest.raises(Forbidden, match="administrators"):
        await mac_token(world, doctor, issue, issued_token(doctor, issue))
    # 2. a role other than the one signed (an administrator's token for a physician's issue)
    with pytest.raises(Forbidden, match="role"):
        await mac_token(world, admin, issue, issued_token(admin, issue, role=Role.administrator))
    # ... issued in someone else's name, or to expire later than signed
    with pytest.raises(Forbidden):
        await mac_token(
            world, admin, issue, issued_token(admin, issue, issued_by=doctor.account_id)
        )
    longer = issued_token(admin, issue)
    longer = longer.model_copy(update={"expires_at": longer.expires_at + timedelta(days=30)})
    with pytest.raises(Forbidden, match="expires"):
        await mac_token(world, admin, issue, longer)
    # ... already used, as if it came pre-spent
    with pytest.raises(Forbidden):
        await mac_token(
            world, admin, issue, issued_token(admin, issue, used_by="acc-x", used_at=now())
        )
    # 3. an administrator's signature for something else (who they are, not an issue)
    with pytest.raises(Forbidden):
        await mac_token(world, admin, au.MeRequest(), issued_token(admin, issue), method=au.ME)
    # 4. the right signature, but asked by records
    with pytest.raises(Forbidden):
        await mac_token(world, admin, issue, issued_token(admin, issue), identity="records")


# ----------------------------------------------------- (e) the bootstrap token


def bootstrap_token() -> TokenRow:
    return pending_token(Role.administrator, secrets.token_urlsafe(16), issued_by=None)


async def test_the_bootstrap_token_only_until_an_administrator_registered(
    world: Mesh,
) -> None:
    auth = world.as_["auth"].rpc
    # only auth asks (for the operator's `admin bootstrap`), not the operator directly
    await refused(
        world, OPERATOR, kv.MAC_BOOTSTRAP_TOKEN, kv.MacTokenRequest(token=bootstrap_token())
    )
    # only an administrator's token, issued by no one
    for bad in (
        pending_token(Role.physician, "x", issued_by=None),
        pending_token(Role.administrator, "x", issued_by="acc-someone"),
    ):
        with pytest.raises(Forbidden):
            await auth.call(kv.MAC_BOOTSTRAP_TOKEN, kv.MacTokenRequest(token=bad))
    # rightly, while no administrator was ever registered
    text = secrets.token_urlsafe(16)
    token = pending_token(Role.administrator, text, issued_by=None)
    (tag,) = (await auth.call(kv.MAC_BOOTSTRAP_TOKEN, kv.MacTokenRequest(token=token))).tags
    # an administrator registers with it (the keyvault records that itself) ...
    reg = registration(text, Role.administrator)
    await mac_account(world, reg, token, tag)
    # ... and no bootstrap token is MAC'd any more
    with pytest.raises(Conflict, match="administrator is registered"):
        await auth.call(kv.MAC_BOOTSTRAP_TOKEN, kv.MacTokenRequest(token=bootstrap_token()))
