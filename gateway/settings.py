"""Settings of the gateway only (the shared ones are in mesh/settings.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

WEB_DIR = Path(__file__).resolve().parents[1] / "frontend" / "dist"


class GatewaySettings(BaseSettings):
    """Limits of the HTTP edge; every one can be set with a `MEDIHAVEN_` variable."""

    model_config = SettingsConfigDict(env_prefix="MEDIHAVEN_", extra="ignore")

    max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Larger bodies: 413.")
    rate_general_capacity: int = Field(default=120, ge=1, description="Burst per account.")
    rate_general_per_s: float = Field(default=10.0, gt=0, description="Refill per account.")
    rate_patient_capacity: int = Field(
        default=30, ge=1, description="Burst of patient-data reads per account."
    )
    rate_patient_per_s: float = Field(default=1.0, gt=0, description="Their refill rate.")
    rate_anonymous_capacity: int = Field(
        default=10, ge=1, description="Burst per client address on unauthenticated routes."
    )
    rate_anonymous_per_s: float = Field(default=0.2, gt=0, description="Their refill rate.")
    key_cache_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a verified account key is cached (an "
        "account change drops it at once).",
    )
    admission_limit: int = Field(
        default=64,
        ge=1,
        description="User calls one gateway process has in the mesh at once; more wait "
        "at the edge, before their RPC deadline starts (`gateway.admission`).",
    )
    admission_per_account: int = Field(
        default=16,
        ge=1,
        description="Of those, how many one account may have in the mesh or waiting at once; "
        "its next call gets a 429 at once, so one account (a script gone wrong, a stolen "
        "key) cannot take every turn from the rest of the clinic.",
    )
    admission_wait_s: float = Field(
        default=10.0,
        gt=0,
        le=20.0,
        description="How long a call may wait for its turn before a 503 with Retry-After "
        "(well inside the 30 s signature window the services check).",
    )
    web_dir: Path = Field(
        default=WEB_DIR,
        description="The built single-page app (`make web`), served at `/`.",
    )
    web_auto_lock_s: int = Field(
        default=600,
        ge=10,
        le=24 * 3600,
        description="Inactivity after which the web app forgets the unlocked key.",
    )


@lru_cache
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
