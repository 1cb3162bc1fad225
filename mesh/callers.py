"""Re-verifying the user's own signature inside a service (not only at the gateway).

A principal in the message headers can be forged by anyone on the bus; the forwarded
RFC 9421 proof cannot. A service that must not trust the gateway alone calls
`require_signed_by`: the proof must be well formed, fresh, made by the acting principal's
key, and that account (as the given resolver finds it, row MAC verified) active and of the
principal's role.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from contracts.auth import AccountRecord, AccountStatus
from mesh.context import CallContext
from mesh.errors import Unauthenticated
from mesh.httpsig import RequestProof, SignatureError, parse_proof, verify_proof

Resolver = Callable[[str], Awaitable[AccountRecord | None]]


async def require_signed_by(ctx: CallContext, resolve: Resolver) -> AccountRecord:
    """The acting principal's account, if this request carries its own fresh signature."""
    principal = ctx.principal
    if principal is None or ctx.proof is None:
        raise Unauthenticated("this operation needs the user's forwarded request signature")
    try:
        proof = RequestProof.model_validate_json(ctx.proof)
        key_id = parse_proof(proof).key_id
    except (ValidationError, ValueError):
        raise Unauthenticated("the forwarded request signature is malformed") from None
    except SignatureError as exc:
        raise Unauthenticated(f"request signature refused: {exc.message}") from None
    if key_id != principal.account_id:
        raise Unauthenticated("the request was not signed by the acting principal")
    record = await resolve(principal.account_id)
    if record is None:
        raise Unauthenticated("the signing account does not exist")
    account = record.account
    if account.status is not AccountStatus.active:
        raise Unauthenticated("the signing account is disabled")
    if account.role is not principal.role:
        raise Unauthenticated("the acting principal's role does not match the signing account")
    assert ctx.runtime is not None
    settings = ctx.runtime.settings
    try:
        verify_proof(
            proof,
            base64.b64decode(account.public_key),
            now=time.time(),
            window_s=settings.signature_window_s,
            skew_s=settings.signature_skew_s,
        )
    except SignatureError as exc:
        raise Unauthenticated(f"request signature refused: {exc.message}") from None
    return record
