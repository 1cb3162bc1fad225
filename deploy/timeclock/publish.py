"""An example time-clock publisher: tell Medihaven that a staff member checked in or out.

Stand-alone on purpose (only `aio-pika` for AMQP, the standard library for the webhook),
so a hospital's integration can start from it. Two ways in:

  # over the bus, as the broker identity `timeclock` (its password is its file in the
  # broker secrets folder, e.g. var/dev-secrets/amqp/timeclock under `make run`):
  TIMECLOCK_AMQP_URL='amqp://medihaven-timeclock:<password>@127.0.0.1:5672/' \
    python deploy/timeclock/publish.py amqp --staff-id <account id> --check in --place "Gate 2"

  # over HTTPS, signed with the key the operator gave auth
  # (MEDIHAVEN_ATTENDANCE_WEBHOOK_SECRET) and this system:
  TIMECLOCK_WEBHOOK_KEY='<the same key>' \
    python deploy/timeclock/publish.py webhook --url https://emr.example/api/v1/attendance/webhook \
      --staff-id <account id> --check out

The staff id is the Medihaven account id (`medihaven staff list`); map badges to it in the
time clock. Events carry the time they happened; auth applies them in that order.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

EXCHANGE = "medihaven.events"
ROUTING_KEYS = {"in": "attendance.checked_in", "out": "attendance.checked_out"}


def event(staff_id: str, place: str, at: datetime | None = None) -> dict[str, str]:
    return {
        "staff_id": staff_id,
        "at": (at or datetime.now(UTC)).isoformat(),
        "place": place,
    }


async def publish_amqp(url: str, check: str, payload: dict[str, str]) -> None:
    import aio_pika

    user = unquote(urlsplit(url).username or "")
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                json.dumps(payload).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(uuid.uuid4()),  # consumers drop a redelivered id
                user_id=user,  # the broker checks it against the connection's user
            ),
            ROUTING_KEYS[check],
        )
    finally:
        await connection.close()


def post_webhook(url: str, key: str, check: str, payload: dict[str, str]) -> tuple[int, str]:
    body = json.dumps(
        {"event_id": f"clock-{uuid.uuid4()}", "type": ROUTING_KEYS[check], **payload}
    ).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    request = urllib.request.Request(  # noqa: S310 - the operator's own URL
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Medihaven-Timestamp": timestamp,
            "X-Medihaven-Signature": f"v1={digest.hexdigest()}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("via", choices=["amqp", "webhook"])
    parser.add_argument("--staff-id", required=True)
    parser.add_argument("--check", choices=["in", "out"], required=True)
    parser.add_argument("--place", default="")
    parser.add_argument("--url", help="webhook: the gateway's /api/v1/attendance/webhook")
    args = parser.parse_args(argv)
    payload = event(args.staff_id, args.place)
    if args.via == "amqp":
        url = os.environ.get("TIMECLOCK_AMQP_URL")
        if not url:
            print("set TIMECLOCK_AMQP_URL (the timeclock broker user's URL)", file=sys.stderr)
            return 2
        asyncio.run(publish_amqp(url, args.check, payload))
        print(f"published {ROUTING_KEYS[args.check]} for {args.staff_id}")
        return 0
    key = os.environ.get("TIMECLOCK_WEBHOOK_KEY")
    if not key or not args.url:
        print("set TIMECLOCK_WEBHOOK_KEY and --url", file=sys.stderr)
        return 2
    status, text = post_webhook(args.url, key, args.check, payload)
    print(f"{status} {text}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
