"""The audit service process: consumes `audit.#` into the hash chain (many events per
transaction), MACs its head at intervals, verifies new entries in the background, walks
the whole chain when asked, and answers administrators' queries."""

from __future__ import annotations

import asyncio
from pathlib import Path

from contracts.audit import AUDIT_RECORDED, SERVICE
from mesh.errors import RpcError
from mesh.logging import get_logger
from mesh.runtime import ConsumerSpec, Runtime
from mesh.service import create_service_app
from services.audit import ingest, verify
from services.audit.handlers import checkpoint
from services.audit.rewrap import router  # handlers + the online rewrap (mesh.rewrap)

log = get_logger("audit")
CHECKPOINT_INTERVAL_S = 5.0

CONSUMERS = [ConsumerSpec("audit", [AUDIT_RECORDED], ingest.consumer, prefetch=ingest.PREFETCH)]


async def checkpoints(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        try:
            await checkpoint(runtime)
        except RpcError as exc:  # e.g. the keyvault is sealed: try again later
            log.warning("audit.checkpoint_skipped", reason=exc.message)


async def start(runtime: Runtime) -> None:
    runtime.spawn(checkpoints(runtime), "audit-checkpoints")
    runtime.spawn(verify.background(runtime), "audit-verification")


app = create_service_app(
    SERVICE,
    router,
    migrations=Path(__file__).with_name("migrations"),
    consumers=CONSUMERS,
    on_startup=start,
)
