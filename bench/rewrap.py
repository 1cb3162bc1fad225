"""Online rewrap (issue 18): how fast a rotation's rewrap moves a clinic's rows to the new
keys, alone and while the clinic works, and what it costs the clinic.

In one run, on one mesh: the clinic of `bench.clinic` is set up and its mix (searches,
summaries, bookings, encounters, chat) runs a while to write rows worth rewrapping; then
every key is rotated (data, integrity, blind index) and the rewrap runs alone; then, in
rounds, the mix alone (the baseline) and a rotation whose rewrap runs under the same mix
at the same concurrency, the mix measured from the moment the services pick the job up
until the run is complete; a last window of the mix alone closes the rounds. Both rewraps run
unthrottled (`rows_per_second` 0: the most a rewrap can take from the clinic; an
administrator's default throttle is 2,000 rows/s per service). Rows/s and fields/s are
from the keyvault's own status: over the wall time from start to complete (it includes
the services' pick-up of the job, up to `mesh.rewrap.POLL_S`), and over the time the
busiest service spent working.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bench import clinic
from bench.common import (
    Measurement,
    duration,
    measure,
    median_of,
    pick,
    print_table,
    write_results,
)
from bench.http import LeanHttp
from bench.mesh import EVERY_SERVICE, Actor, Signed, bench_mesh
from tests.support.polling import until

PURPOSES = ("data", "integrity", "blind_index")
START = {"batch_rows": 200, "rows_per_second": 0, "lease_seconds": 15}
LONGEST_RUN_S = 600.0


async def _status(api: Signed, admin: Actor) -> dict[str, Any]:
    status: dict[str, Any] = await api.call(admin, "GET", "/api/v1/vault/rewrap")
    return status


async def _rotate_and_start(api: Signed, admin: Actor) -> None:
    for purpose in PURPOSES:
        await api.call(admin, "POST", "/api/v1/vault/rotate", {"purpose": purpose, "add": 1})
    await api.call(admin, "POST", "/api/v1/vault/rewrap", START)


async def _picked_up(api: Signed, admin: Actor) -> bool:
    status = await _status(api, admin)
    return status["state"] != "running" or any(t["rows_scanned"] > 0 for t in status["tables"])


async def _finished(api: Signed, admin: Actor) -> bool:
    state: str = (await _status(api, admin))["state"]
    return state != "running"


def _figures(status: dict[str, Any]) -> dict[str, Any]:
    """Rows, fields and MAC tags moved, and the rates, from a finished run's status."""
    tables = status["tables"]
    rows = sum(t["rows_rewrapped"] for t in tables)
    fields = sum(t["fields_rewrapped"] for t in tables)
    macs = sum(t["macs_rewrapped"] for t in tables)
    wall = (
        datetime.fromisoformat(status["finished_at"]) - datetime.fromisoformat(status["started_at"])
    ).total_seconds()
    by_service: dict[str, float] = {}
    for t in tables:
        by_service[t["service"]] = by_service.get(t["service"], 0.0) + t["seconds"]
    busiest = max(by_service.values(), default=0.0)
    return {
        "state": status["state"],
        "rows_rewrapped": rows,
        "fields_rewrapped": fields,
        "macs_rewrapped": macs,
        "failures": len(status["failures"]),
        "wall_s": wall,
        "busiest_service_s": busiest,
        "rows_per_s_wall": rows / wall if wall > 0 else 0.0,
        "fields_per_s_wall": fields / wall if wall > 0 else 0.0,
        "rows_per_s_working": rows / busiest if busiest > 0 else 0.0,
        "fields_per_s_working": fields / busiest if busiest > 0 else 0.0,
    }


async def _wait_done(api: Signed, admin: Actor) -> dict[str, Any]:
    async def done() -> bool:
        return await _finished(api, admin)

    await until(done, timeout=LONGEST_RUN_S, interval=0.25)
    return _figures(await _status(api, admin))


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    window = duration(duration_s if duration_s is not None else 10.0)
    concurrency = pick(16, 4)
    rounds = pick(3, 1)
    async with bench_mesh(EVERY_SERVICE, "rewrap") as bench:
        async with LeanHttp(bench.gateway.url) as http:
            api = Signed(http)
            world = await clinic.setup(api, bench.admin_token)
            admin: Actor = world["admin"]
            workload = clinic.workload(api, world)

            async def mix(name: str, seconds: float, **options: Any) -> Measurement:
                return await measure(
                    name, workload, concurrency=concurrency, duration_s=seconds, **options
                )

            seeding = await mix("seeding (the clinic mix)", pick(30.0, 1.0))
            await _rotate_and_start(api, admin)
            alone = await _wait_done(api, admin)
            without = [await mix("clinic mix alone", window)]
            during: list[Measurement] = []
            under: list[dict[str, Any]] = []
            for _ in range(rounds):
                await _rotate_and_start(api, admin)
                await until(lambda: _picked_up(api, admin), timeout=60, interval=0.25)
                during.append(
                    await mix(
                        "clinic mix during the rewrap",
                        LONGEST_RUN_S,
                        warmup_s=0,
                        until=lambda: _finished(api, admin),
                    )
                )
                under.append(await _wait_done(api, admin))
                without.append(await mix("clinic mix alone", max(window, during[-1].seconds)))
    return _report(seeding, without, during, alone, under)


def _report(
    seeding: Measurement,
    without: list[Measurement],
    during: list[Measurement],
    alone: dict[str, Any],
    under: list[dict[str, Any]],
) -> Mapping[str, object]:
    """Windows of the mix alone bracket each window with a rewrap (a shared machine
    drifts); each side's row is the median of its windows, the rewrap's figures under
    the mix the median of its rounds."""
    rows = [
        seeding,
        median_of("clinic mix alone", without),
        median_of("clinic mix during the rewrap", during),
    ]
    print_table(
        f"Clinic mix without and with an unthrottled rewrap running ({len(during)} rounds)", rows
    )
    _, base, busy = rows
    impact = {
        "p50_during_vs_alone": busy.p50_ms / base.p50_ms,
        "p99_during_vs_alone": busy.p99_ms / base.p99_ms,
        "throughput_during_vs_alone": busy.throughput / base.throughput,
    }
    under_mix = {
        k: statistics.median(u[k] for u in under)
        if isinstance(under[0][k], float)
        else under[-1][k]
        for k in under[0]
    }
    under_mix["state"] = "complete" if all(u["state"] == "complete" for u in under) else "not"
    under_mix["failures"] = sum(u["failures"] for u in under)
    for name, figures in (("alone", alone), ("under the clinic mix", under_mix)):
        print(
            f"  rewrap {name}: {figures['rows_rewrapped']} rows, {figures['fields_rewrapped']} "
            f"fields, {figures['macs_rewrapped']} MACs in {figures['wall_s']:.1f} s: "
            f"{figures['rows_per_s_wall']:.0f} rows/s, {figures['fields_per_s_wall']:.0f} "
            f"fields/s (busiest service working {figures['busiest_service_s']:.1f} s: "
            f"{figures['rows_per_s_working']:.0f} rows/s, "
            f"{figures['fields_per_s_working']:.0f} fields/s); {figures['failures']} failures"
        )
    print(
        f"  the mix during the rewrap: p50 {impact['p50_during_vs_alone']:.2f}x, p99 "
        f"{impact['p99_during_vs_alone']:.2f}x, throughput "
        f"{impact['throughput_during_vs_alone']:.0%} of the mix alone"
    )
    result = {
        "rows": rows,
        "windows": {"alone": without, "during": during},
        "rewrap_alone": alone,
        "rewrap_under_mix": under_mix,
        "rounds_under_mix": under,
        "impact": impact,
    }
    print(f"  written: {write_results('rewrap', result)}")
    return result


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
