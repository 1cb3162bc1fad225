"""The records service process: its FastAPI app, with the mesh running in its lifespan.

Besides records' own queue, each replica serves the access decisions the keyvault asks
for (`recordsaccess.may_read`) on a queue of its own.
"""

from __future__ import annotations

from pathlib import Path

from contracts.records import SERVICE
from mesh.service import create_service_app
from services.records.care import start_access_server, stop_access_server
from services.records.handlers import router

app = create_service_app(
    SERVICE,
    router,
    migrations=Path(__file__).with_name("migrations"),
    on_startup=start_access_server,
    on_shutdown=stop_access_server,
)
