"""The records service process: its FastAPI app, with the mesh running in its lifespan.

Besides records' own queue, each replica serves the access decisions the keyvault asks
for (`recordsaccess.may_read`) on a queue of its own. In development mode a first run
loads the sample medicine catalog.
"""

from __future__ import annotations

from pathlib import Path

from contracts.records import SERVICE
from mesh.runtime import Runtime
from mesh.service import create_service_app
from services.records.care import start_access_server, stop_access_server
from services.records.catalog import load_sample_when_empty
from services.records.export import resume_loop
from services.records.rewrap import router  # handlers + the online rewrap (mesh.rewrap)


async def start(runtime: Runtime) -> None:
    await start_access_server(runtime)
    await load_sample_when_empty(runtime)
    # Bulk exports: new approvals, and runs a dead replica left (`services.records.export`).
    runtime.spawn(resume_loop(runtime), "fhir-export-resume")


app = create_service_app(
    SERVICE,
    router,
    migrations=Path(__file__).with_name("migrations"),
    on_startup=start,
    on_shutdown=stop_access_server,
)
