"""Settings for every process, read once from `MEDIHAVEN_*` environment variables.

Defaults point at the local RabbitMQ, MariaDB and Redis on their standard loopback ports,
so a developer needs no configuration; production overrides each through the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One flat settings object shared by all services and the gateway."""

    model_config = SettingsConfigDict(env_prefix="MEDIHAVEN_", extra="ignore")

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_user: str = "root"
    db_password: SecretStr = SecretStr("")
    db_prefix: str = Field(
        default="medihaven_",
        description="Each service keeps its tables in database `<db_prefix><service>`.",
    )
    db_pool_size: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "medihaven:"

    rpc_deadline_s: float = Field(default=5.0, gt=0, description="Default per-call deadline.")
    rpc_prefetch: int = Field(
        default=32, ge=1, description="Requests one replica works on at once."
    )
    outbox_poll_s: float = 0.5
    shutdown_grace_s: float = 10.0

    signature_window_s: float = Field(
        default=30.0, gt=0, description="How old a signed request's `created` may be."
    )
    signature_skew_s: float = Field(
        default=5.0, ge=0, description="How far in the future `created` may be (clock skew)."
    )

    keyvault_block_size: int = Field(
        default=65536,
        ge=1,
        description="Nonce counters a keyvault replica leases at a time (per key).",
    )

    clinic_timezone: str = Field(
        default="Europe/Berlin",
        description="IANA time zone of the clinic: working hours and calendar days are "
        "wall-clock times there (DST-aware); times on the wire are UTC.",
    )

    care_window_before_days: float = Field(
        default=7,
        ge=0,
        description="A physician may read a patient's chart from this many "
        "days before an appointment with them…",
    )
    care_window_after_days: float = Field(
        default=30, ge=0, description="…until this many days after it."
    )
    break_glass_hours: float = Field(
        default=4, gt=0, description="How long emergency (break-glass) access lasts."
    )

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    http_host: str = "127.0.0.1"
    http_port: int | None = Field(
        default=None, description="HTTP port of this process; each service has its own default."
    )
    dev_mode: bool = Field(
        default=False,
        description="Development conveniences (e.g. auto-unseal). Never enable in production.",
    )

    @field_validator("clinic_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (IANA name, e.g. Europe/Berlin)"
            ) from None
        return value

    def database(self, service: str) -> str:
        """Name of the MariaDB database that belongs to `service`."""
        return f"{self.db_prefix}{service}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests construct `Settings` directly)."""
    return Settings()
