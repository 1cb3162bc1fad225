"""The auth service over the real bus, keyvault and database: registration, tokens, and
an attacker who edits the database or forges principals on the bus."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from contracts import auth
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.auth import AccountStatus, TokenState
from contracts.base import Principal, Role
from mesh.errors import Conflict, Forbidden, IntegrityError, NotFound, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.runtime import ConsumerSpec, Runtime
from services.auth import handlers
from tests.auth.support import Identity, Member, identity, proof, public_key_of, signed

AUDITS: list[AuditEvent] = []


def collect(_: Runtime):  # type: ignore[no-untyped-def]
    async def handle(event: ReceivedEvent[AuditEvent]) -> None:
        AUDITS.append(event.payload)

    return handle


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[Identity]:
    async with identity("auth", [ConsumerSpec("authtest-audit", [AUDIT_RECORDED], collect)]) as w:
        yield w


async def audited(type: str, since: int) -> list[AuditEvent]:
    for _ in range(100):
        found = [a for a in AUDITS[since:] if a.type == type]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


def rid() -> str:
    return str(uuid.uuid4())


async def test_full_flow_bootstrap_register_issue_and_me(world: Identity) -> None:
    admin = await world.admin()
    assert admin.account.role is Role.administrator
    assert world.operator is not None
    with pytest.raises(Conflict):
        await world.operator.rpc.call(
            auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=rid()
        )
    # bootstrap is the operator's: not even the gateway may ask for it
    with pytest.raises(Forbidden):
        await world.client.rpc.call(auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=rid())
    members: dict[Role, Member] = {}
    for role in (Role.physician, Role.receptionist):
        issued = await world.as_(admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=role))
        members[role] = await world.register(issued.token, f"{role.value}-{rid()[:6]}")
    for role, member in [(Role.administrator, admin), *members.items()]:
        me = await world.as_(member, auth.ME, auth.MeRequest())
        assert me.role is role and me.account_id == member.account.account_id
    staff = await world.as_(admin, auth.LIST_STAFF, auth.ListStaffRequest())
    assert {a.account_id for a in staff.accounts} >= {
        m.account.account_id for m in members.values()
    }
    tokens = await world.as_(admin, auth.LIST_TOKENS, auth.ListTokensRequest(state=TokenState.used))
    assert len(tokens.tokens) >= 3
    # A token is shown once and stored nowhere: not even as a kept reply for repeats.
    issued = await world.as_(
        admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.physician), idempotency_key="k1"
    )
    assert world.auth.db is not None
    stored = await world.auth.db.fetchall("SELECT response FROM mesh_idempotency")
    assert all(issued.token.encode() not in bytes(r[0] or b"") for r in stored)
    with pytest.raises(Conflict, match="not kept"):
        await world.as_(
            admin,
            auth.ISSUE_TOKEN,
            auth.IssueTokenRequest(role=Role.physician),
            idempotency_key="k1",
        )


async def test_expired_revoked_reused_and_unknown_tokens_get_one_message(
    world: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await world.admin()
    used = await world.as_(admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.physician))
    await world.register(used.token, f"first-{rid()[:6]}")
    revoked = await world.as_(admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.physician))
    info = await world.as_(
        admin, auth.REVOKE_TOKEN, auth.RevokeTokenRequest(token_id=revoked.token_id)
    )
    assert info.state is TokenState.revoked
    with pytest.raises(Conflict):
        await world.as_(
            admin, auth.REVOKE_TOKEN, auth.RevokeTokenRequest(token_id=revoked.token_id)
        )
    expiring = await world.as_(
        admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.receptionist, expires_hours=1)
    )
    messages = set()
    for token in (used.token, revoked.token, "no-such-token"):
        with pytest.raises(Unauthenticated) as err:
            await world.register(token, f"late-{rid()[:6]}")
        messages.add(err.value.message)
    later = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(handlers, "_now", lambda: later)
    with pytest.raises(Unauthenticated) as err:
        await world.register(expiring.token, f"late-{rid()[:6]}")
    messages.add(err.value.message)
    assert messages == {handlers.REFUSED_REGISTRATION}


async def test_registration_needs_proof_of_possession(world: Identity) -> None:
    admin = await world.admin()
    issued = await world.as_(admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.physician))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    mine, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    request = auth.RegisterRequest(
        token=issued.token,
        username=f"pop-{rid()[:6]}",
        display_name="P",
        public_key=public_key_of(mine),
    )
    # Each attempt is of this very request (its target and body), so what is refused is
    # the signer: no proof, another key than the one registered, a keyid other than
    # "register", or a proof of some other request by the rightful key.
    attempts: list[tuple[str | None, bytes]] = [
        (None, b""),
        signed(other, auth.REGISTRATION_KEY_ID, auth.REGISTER, request),
        signed(mine, "someone", auth.REGISTER, request),
        (proof(mine, auth.REGISTRATION_KEY_ID), b"{}"),
    ]
    for bad, body in attempts:
        with pytest.raises(Unauthenticated):
            await world.client.rpc.call(
                auth.REGISTER, request, proof=bad, signed_body=body, idempotency_key=rid()
            )
    # the token is still usable by its rightful holder
    good, body = signed(mine, auth.REGISTRATION_KEY_ID, auth.REGISTER, request)
    await world.client.rpc.call(
        auth.REGISTER, request, proof=good, signed_body=body, idempotency_key=rid()
    )


async def test_forged_principals_on_the_bus_are_refused(world: Identity) -> None:
    admin = await world.admin()
    issued = await world.as_(
        admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.receptionist)
    )
    clerk = await world.register(issued.token, f"clerk-{rid()[:6]}")
    # role check by the runtime
    for method, request in [
        (auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.administrator)),
        (auth.LIST_STAFF, auth.ListStaffRequest()),
        (auth.LIST_TOKENS, auth.ListTokensRequest()),
        (
            auth.SET_ACCOUNT_STATUS,
            auth.SetAccountStatusRequest(
                account_id=admin.account.account_id, status=AccountStatus.disabled
            ),
        ),
    ]:
        with pytest.raises(Forbidden):
            await world.as_(clerk, method, request)
    # claiming the administrator role in the headers, without the administrator's signature
    forged = Principal(account_id=admin.account.account_id, role=Role.administrator)
    issue = auth.IssueTokenRequest(role=Role.administrator)
    clerk_proof, clerk_body = signed(clerk.key, clerk.account.account_id, auth.ISSUE_TOKEN, issue)
    for bad, body in ((clerk_proof, clerk_body), (clerk.proof(), b"{}")):
        with pytest.raises(Unauthenticated):
            await world.client.rpc.call(
                auth.ISSUE_TOKEN,
                issue,
                principal=forged,
                proof=bad,
                signed_body=body,
                idempotency_key=rid(),
            )
    with pytest.raises(Unauthenticated):
        await world.client.rpc.call(
            auth.ISSUE_TOKEN,
            auth.IssueTokenRequest(role=Role.administrator),
            principal=forged,
            idempotency_key=rid(),
        )
    clerk_as_admin = Principal(account_id=clerk.account.account_id, role=Role.administrator)
    with pytest.raises(Unauthenticated):  # a proof of some other request
        await world.client.rpc.call(
            auth.LIST_STAFF, auth.ListStaffRequest(), principal=clerk_as_admin, proof=clerk.proof()
        )
    # the clerk's own proof of this very request: the role is the signing account's, not
    # the header's
    own, body = signed(
        clerk.key, clerk.account.account_id, auth.LIST_STAFF, auth.ListStaffRequest()
    )
    with pytest.raises(Forbidden):
        await world.client.rpc.call(
            auth.LIST_STAFF,
            auth.ListStaffRequest(),
            principal=clerk_as_admin,
            proof=own,
            signed_body=body,
        )


async def test_disable_and_enable(world: Identity) -> None:
    admin = await world.admin()
    issued = await world.as_(admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.physician))
    doc = await world.register(issued.token, f"doc-{rid()[:6]}")
    await world.as_(
        admin,
        auth.SET_ACCOUNT_STATUS,
        auth.SetAccountStatusRequest(
            account_id=doc.account.account_id, status=AccountStatus.disabled
        ),
    )
    with pytest.raises(Unauthenticated, match="disabled"):
        await world.as_(doc, auth.ME, auth.MeRequest())
    await world.as_(
        admin,
        auth.SET_ACCOUNT_STATUS,
        auth.SetAccountStatusRequest(
            account_id=doc.account.account_id, status=AccountStatus.active
        ),
    )
    assert (await world.as_(doc, auth.ME, auth.MeRequest())).status is AccountStatus.active
    with pytest.raises(Forbidden):
        await world.as_(
            admin,
            auth.SET_ACCOUNT_STATUS,
            auth.SetAccountStatusRequest(
                account_id=admin.account.account_id, status=AccountStatus.disabled
            ),
        )


async def test_rotate_key(world: Identity) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    admin = await world.admin()
    new_key = Ed25519PrivateKey.generate()
    await world.as_(
        admin, auth.ROTATE_KEY, auth.RotateKeyRequest(new_public_key=public_key_of(new_key))
    )
    with pytest.raises(Unauthenticated):  # the old key no longer works
        await world.as_(admin, auth.ME, auth.MeRequest())
    admin.key = new_key
    assert (
        await world.as_(admin, auth.ME, auth.MeRequest())
    ).account_id == admin.account.account_id


async def test_database_tampering_is_refused_and_audited(world: Identity) -> None:
    admin = await world.admin()
    tokens = [
        await world.as_(admin, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=r))
        for r in (Role.receptionist, Role.physician, Role.physician)
    ]
    clerk = await world.register(tokens[0].token, f"clerk-{rid()[:6]}")
    doc_a = await world.register(tokens[1].token, f"doca-{rid()[:6]}")
    doc_b = await world.register(tokens[2].token, f"docb-{rid()[:6]}")
    database = world.auth.db
    assert database is not None
    # 1. promote the receptionist to administrator in the database
    since = len(AUDITS)
    await database.execute(
        "UPDATE staff_accounts SET role = 'administrator' WHERE account_id = %s",
        (clerk.account.account_id,),
    )
    promoted = Member(clerk.key, clerk.account.model_copy(update={"role": Role.administrator}))
    with pytest.raises(Unauthenticated):
        await world.as_(promoted, auth.LIST_STAFF, auth.ListStaffRequest())
    with pytest.raises(IntegrityError):
        await world.client.rpc.call(
            auth.RESOLVE_KEY, auth.ResolveKeyRequest(account_id=clerk.account.account_id)
        )
    assert await audited("integrity.row_rejected", since)
    # 2. insert a new administrator row with the attacker's own key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    attacker = Ed25519PrivateKey.generate()
    fake_id = rid()
    await database.execute(
        "INSERT INTO staff_accounts (account_id, username, display_name, role, status, "
        "public_key, created_at, updated_at, mac) "
        "VALUES (%s, %s, 'Eve', 'administrator', 'active', %s, NOW(6), NOW(6), %s)",
        (
            fake_id,
            f"eve-{fake_id[:6]}",
            public_key_of(attacker),
            base64.b64encode(b"x" * 65).decode(),
        ),
    )
    eve = Member(
        attacker,
        clerk.account.model_copy(update={"account_id": fake_id, "role": Role.administrator}),
    )
    with pytest.raises(Unauthenticated):
        await world.as_(eve, auth.ISSUE_TOKEN, auth.IssueTokenRequest(role=Role.physician))
    staff = await world.as_(admin, auth.LIST_STAFF, auth.ListStaffRequest())
    ids = {a.account_id for a in staff.accounts}
    assert fake_id not in ids and clerk.account.account_id not in ids
    with pytest.raises(IntegrityError):
        await world.client.rpc.call(auth.RESOLVE_KEY, auth.ResolveKeyRequest(account_id=fake_id))
    # 3. swap two accounts' public keys (doc_a now "has" doc_b's key)
    await database.execute(
        "UPDATE staff_accounts a JOIN staff_accounts b ON a.account_id = %s AND b.account_id = %s "
        "SET a.public_key = b.public_key, b.public_key = a.public_key",
        (doc_a.account.account_id, doc_b.account.account_id),
    )
    impostor = Member(doc_b.key, doc_a.account)
    with pytest.raises(Unauthenticated):
        await world.as_(impostor, auth.ME, auth.MeRequest())
    with pytest.raises(IntegrityError):
        await world.client.rpc.call(
            auth.RESOLVE_KEY, auth.ResolveKeyRequest(account_id=doc_a.account.account_id)
        )
    # a bootstrap is not re-opened by a forged administrator either
    assert world.operator is not None
    with pytest.raises(Conflict):
        await world.operator.rpc.call(
            auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=rid()
        )
    # and unknown accounts are simply unknown
    with pytest.raises(NotFound):
        await world.client.rpc.call(auth.RESOLVE_KEY, auth.ResolveKeyRequest(account_id=rid()))
