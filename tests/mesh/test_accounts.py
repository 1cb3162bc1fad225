"""mesh/accounts.py: a signer's account is asked of auth once per lifetime and forgotten
at once on a change; an id auth does not know, a row whose MAC failed, or a reply for
another account is no account at all; auth unreachable is an error, never 'no account'
(and never cached)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from contracts.auth import RESOLVE_KEY, Account, AccountRecord, AccountStatus, ResolveKeyRequest
from contracts.base import Role
from mesh.accounts import MAX_ACCOUNT_ID, RemoteAccounts
from mesh.errors import IntegrityError, NotFound, RpcError, Unavailable
from mesh.rpc import RpcClient


def record(account_id: str) -> AccountRecord:
    now = datetime.now(UTC)
    account = Account(
        account_id=account_id,
        username="drwho",
        display_name="Dr Who",
        role=Role.physician,
        status=AccountStatus.active,
        public_key="A" * 43 + "=",
        created_at=now,
        updated_at=now,
    )
    return AccountRecord(account=account, mac="tag")


class Auth:
    """Stands in for the RPC client's call to auth.resolve_key."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.answers: dict[str, AccountRecord | RpcError] = {}

    async def call(self, method: Any, request: ResolveKeyRequest, **kwargs: Any) -> AccountRecord:
        assert method is RESOLVE_KEY and kwargs.get("principal", "unset") is None
        self.asked.append(request.account_id)
        answer = self.answers.get(request.account_id, NotFound("no such account"))
        if isinstance(answer, RpcError):
            raise answer
        return answer


def accounts_with(auth: Auth, ttl_s: float = 60) -> RemoteAccounts:
    return RemoteAccounts(cast(RpcClient, auth), ttl_s=ttl_s)


async def test_an_account_is_asked_once_and_forgotten_on_a_change() -> None:
    auth, account_id = Auth(), str(uuid.uuid4())
    expected = auth.answers[account_id] = record(account_id)
    accounts = accounts_with(auth)
    assert await accounts.get(account_id) == expected
    assert await accounts.get(account_id) == expected
    assert auth.asked == [account_id]
    accounts.forget(account_id)
    await accounts.get(account_id)
    assert auth.asked == [account_id, account_id]


async def test_unknown_or_tampered_rows_are_no_account_and_asked_again_next_time() -> None:
    auth = Auth()
    tampered = str(uuid.uuid4())
    auth.answers[tampered] = IntegrityError("row MAC does not verify")
    accounts = accounts_with(auth)
    for account_id in ("unknown", tampered):
        assert await accounts.get(account_id) is None
        assert await accounts.get(account_id) is None
    assert auth.asked == ["unknown", "unknown", tampered, tampered]


async def test_a_reply_for_another_account_is_no_account() -> None:
    auth, asked_for = Auth(), str(uuid.uuid4())
    auth.answers[asked_for] = record(str(uuid.uuid4()))
    accounts = accounts_with(auth)
    assert await accounts.get(asked_for) is None
    assert await accounts.get(asked_for) is None
    assert len(auth.asked) == 2  # not cached under the asked id


async def test_ids_auth_could_not_hold_are_refused_without_asking() -> None:
    auth = Auth()
    accounts = accounts_with(auth)
    assert await accounts.get("") is None
    assert await accounts.get("x" * (MAX_ACCOUNT_ID + 1)) is None
    assert auth.asked == []


async def test_auth_unreachable_is_an_error_not_a_missing_account() -> None:
    auth, account_id = Auth(), str(uuid.uuid4())
    auth.answers[account_id] = Unavailable("auth is down")
    accounts = accounts_with(auth)
    with pytest.raises(Unavailable):
        await accounts.get(account_id)
    expected = auth.answers[account_id] = record(account_id)
    assert await accounts.get(account_id) == expected
