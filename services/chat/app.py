"""The chat service process: its FastAPI app, with the mesh running in its lifespan."""

from __future__ import annotations

from pathlib import Path

from contracts.chat import SERVICE
from mesh.service import create_service_app
from services.chat.rewrap import router  # handlers + the online rewrap (mesh.rewrap)

app = create_service_app(SERVICE, router, migrations=Path(__file__).with_name("migrations"))
