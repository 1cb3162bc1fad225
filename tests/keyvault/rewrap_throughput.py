"""Rewrap throughput, measured (not a test): `python -m tests.keyvault.rewrap_throughput`.

Scheduling and chat (in process, their real rewrap declarations) hold `--rows`
appointments and messages written straight into their databases under keys that a
rotation then retires; an unthrottled rewrap moves them all through a real keyvault,
MariaDB and RabbitMQ. Printed: rows/s and fields/s over the run's wall time and per
service (from the run's own progress), and the p50/p99 of a user's write (encrypt +
UPDATE of one appointment) measured in the same run before and during the rewrap.
`bench/` will carry the full benchmark under the `bench.clinic` mix.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

from contracts import keyvault as kv
from contracts.base import Role
from mesh import db
from services.chat import rewrap as chat_rewrap
from services.scheduling import rewrap as scheduling_rewrap
from tests.mesh.test_rewrap import appointments, binding, done, messages, service, status
from tests.support.clinic import Clinic, clinic


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def user_writes(
    c: Clinic, database: db.Database, booked: dict[str, dict[str, str]], stop: asyncio.Event
) -> list[float]:
    """One user's writes, back to back: the latency of each (seconds)."""
    rng = random.Random(3)
    keys = sorted(booked)
    latencies: list[float] = []
    while not stop.is_set():
        key = rng.choice(keys)
        began = time.perf_counter()
        (cipher,) = await c.encrypt(
            [
                kv.FieldRow(
                    table="appointments",
                    row_id=key,
                    fields={"reason": f"user {uuid.uuid4().hex[:6]}"},
                    binding=binding(booked[key]["patient"], booked[key]["physician"]),
                )
            ]
        )
        await database.execute(
            "UPDATE appointments SET reason_enc = %s WHERE appointment_id = %s",
            (cipher["reason"], key),
        )
        latencies.append(time.perf_counter() - began)
        await asyncio.sleep(0.005)
    return latencies


async def measure(rows: int, batch_rows: int, baseline_s: float) -> None:
    async with (
        clinic("kvbench") as c,
        service(c, "scheduling", scheduling_rewrap.router) as scheduling,
        service(c, "chat", chat_rewrap.router) as chat,
    ):
        assert scheduling.db is not None and chat.db is not None
        booked = await appointments(c, scheduling.db, rows)
        await messages(c, chat.db, rows)
        admin = await c.add_staff("bench-admin", Role.administrator)
        await c.call(kv.ROTATE, kv.RotateRequest(add=4), admin)
        users_db = await db.Database.connect(c.settings, c.settings.database("scheduling"))
        stop = asyncio.Event()
        before = asyncio.create_task(user_writes(c, users_db, booked, stop))
        await asyncio.sleep(baseline_s)
        stop.set()
        quiet = await before
        stop = asyncio.Event()
        during = asyncio.create_task(user_writes(c, users_db, booked, stop))
        began = time.perf_counter()
        await c.call(
            kv.REWRAP_START,
            kv.RewrapStartRequest(batch_rows=batch_rows, rows_per_second=0),
            admin,
        )
        deadline = began + 600
        while time.perf_counter() < deadline:
            found = await status(c, admin)
            if done(found, "scheduling") and done(found, "chat"):
                break
            await asyncio.sleep(0.1)
        else:
            raise TimeoutError("the rewrap did not finish within 600 s")
        wall = time.perf_counter() - began
        stop.set()
        busy = await during
        await users_db.close()
        await c.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), admin)
        tables = [t for t in found.tables if t.service in ("scheduling", "chat")]
        moved = sum(t.rows_rewrapped for t in tables)
        fields = sum(t.fields_rewrapped for t in tables)
        print(f"rows {2 * rows} ({rows} appointments, {rows} messages), batch {batch_rows}")
        print(
            f"wall {wall:.1f} s: {moved / wall:.0f} rows/s, {fields / wall:.0f} fields/s "
            f"(both services together; {moved} rows, {fields} fields rewrapped)"
        )
        for t in tables:
            if t.seconds > 0 and t.rows_rewrapped:
                print(
                    f"  {t.service}.{t.table}: {t.rows_rewrapped / t.seconds:.0f} rows/s, "
                    f"{t.fields_rewrapped / t.seconds:.0f} fields/s over {t.seconds:.1f} s "
                    f"working, {t.pass_number} passes, {t.rows_changed} changed by the user"
                )
        for name, values in (("without", quiet), ("during", busy)):
            print(
                f"user write {name} the rewrap: p50 {1000 * statistics.median(values):.1f} ms, "
                f"p99 {1000 * percentile(values, 0.99):.1f} ms ({len(values)} writes)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3000, help="Rows per service.")
    parser.add_argument("--batch-rows", type=int, default=200)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(measure(args.rows, args.batch_rows, args.baseline_seconds))


if __name__ == "__main__":
    main()
