"""`python -m bench` (`make bench`): every benchmark, each against its same-run baseline,
on uvloop (as the services run). `python -m bench records audit` runs only those;
`--quick` (or MEDIHAVEN_BENCH_QUICK=1) with tiny sizes, to check they run
(`bench.common`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable

import uvloop

from bench import (
    audit,
    catalog,
    chat,
    clinic,
    clustered,
    gateway,
    keyvault,
    lists,
    overload,
    profile,
    records,
    rewrap,
    rpc,
    scheduling,
)
from bench.common import QUICK_ENV

BENCHES: dict[str, Callable[[], Awaitable[object]]] = {
    "rpc": rpc.run,
    "keyvault": keyvault.run,
    "gateway": gateway.run,
    "scheduling": scheduling.run,
    "records": records.run,
    "lists": lists.run,
    "audit": audit.run,
    "catalog": catalog.run,
    "chat": chat.run,
    "clinic": clinic.run,
    "clustered": clustered.run,
    "overload": overload.run,
    "rewrap": rewrap.run,
    "profile": profile.run,
}


async def main(names: list[str]) -> None:
    if "--quick" in names:
        os.environ[QUICK_ENV] = "1"
        names = [n for n in names if n != "--quick"]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    for name in names or list(BENCHES):
        await BENCHES[name]()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1:]))
