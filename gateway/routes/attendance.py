"""The time-clock webhook: for attendance systems that cannot speak AMQP.

Unsigned by a staff key: it carries an HMAC-SHA-256 under a key the operator gave the
time clock and auth (`MEDIHAVEN_ATTENDANCE_WEBHOOK_SECRET`), over `<timestamp>.<body>`.
The gateway only rate-limits it per address and relays the raw body and headers; auth
checks the signature, the timestamp and that the event id is new, so a taken-over
gateway, which never holds the key, cannot check anyone in. The other attendance routes
(`/me/attendance`, `/attendance`, `/staff/{id}/check-in|check-out`) are declared in
`contracts.attendance` and relayed like every signed route.
"""

from __future__ import annotations

from fastapi import APIRouter, Header, Request

from contracts import attendance as att
from gateway.deps import runtime, security
from gateway.errors import ApiError

router = APIRouter(tags=["attendance"])
MAX_BODY = 16_384


@router.post(att.WEBHOOK_PATH, response_model=att.WebhookReply)
async def webhook(
    request: Request,
    x_medihaven_timestamp: str = Header(default="", max_length=32),
    x_medihaven_signature: str = Header(default="", max_length=200),
) -> att.WebhookReply:
    """One check-in or check-out from a time clock: a JSON `WebhookEvent`, signed with
    `X-Medihaven-Signature: v1=<hex HMAC-SHA-256 of "<timestamp>.<body>">` and
    `X-Medihaven-Timestamp: <Unix seconds>`. A replayed event id answers 409."""
    await security(request).anonymous_request(request)
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, f"a webhook event is at most {MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    return await runtime(request).rpc.call(
        att.WEBHOOK,
        att.WebhookRequest(
            body=text, timestamp=x_medihaven_timestamp, signature=x_medihaven_signature
        ),
    )
