"""The auth service process: its FastAPI app, with the mesh running in its lifespan."""

from __future__ import annotations

from pathlib import Path

from contracts.auth import SERVICE
from mesh.service import create_service_app
from services.auth.attendance import CONSUMERS as ATTENDANCE_CONSUMERS
from services.auth.handlers import use_local_accounts
from services.auth.rewrap import router  # handlers + the online rewrap (mesh.rewrap)

app = create_service_app(
    SERVICE,
    router,
    migrations=Path(__file__).with_name("migrations"),
    consumers=ATTENDANCE_CONSUMERS,
    on_startup=use_local_accounts,
)
