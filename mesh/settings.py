"""Settings for every process, read once from `MEDIHAVEN_*` environment variables.

Defaults point at the local RabbitMQ, MariaDB and Redis on their standard loopback ports,
so a developer needs no configuration; production overrides each through the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
DEV_SECRETS = ROOT / "var" / "dev-secrets"
"""Development mode only (git-ignored): generated broker passwords, keyvault shares."""


def parse_hostports(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (IPv6 hosts in brackets) as pairs; ValueError naming a bad one."""
    pairs: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = urlsplit(f"//{item}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path or parts.username:
            raise ValueError(f"{item!r} is not host:port")
        pairs.append((parts.hostname, port))
    return pairs


def _master_name(default: str | None, description: str) -> Any:
    """A Redis Sentinel master's name."""
    return Field(default=default, pattern=r"^[A-Za-z0-9._-]{1,64}$", description=description)


def _off_duty(role: str, default: str) -> Any:
    """What staff of `role` keep off duty (comma-separated: calendar, chat)."""
    return Field(
        default=default,
        pattern=r"^(|[a-z]+(,[a-z]+)*)$",
        description=f"What a {role} keeps off duty (comma-separated: calendar, chat).",
    )


class Settings(BaseSettings):
    """One flat settings object shared by all services and the gateway."""

    model_config = SettingsConfigDict(env_prefix="MEDIHAVEN_", extra="ignore")

    amqp_url: SecretStr = Field(
        default=SecretStr("amqp://127.0.0.1:5672/"),
        description="Where RabbitMQ is (and the vhost). Without credentials in it, each "
        "process connects as its own broker user `<amqp_user_prefix><identity>`.",
    )
    amqp_nodes: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9._\[\]:-]+:[0-9]{1,5}(,[A-Za-z0-9._\[\]:-]+:[0-9]{1,5})*)?$",
        description="The nodes of a RabbitMQ cluster as `host:port,…` (the URL's user, vhost "
        "and options apply to each). A client connects to the first that answers, in this "
        "order, and on losing it to the next (`mesh.amqp`). Empty: `amqp_url`'s node only.",
    )
    amqp_user_prefix: str = Field(
        default="medihaven-",
        pattern=r"^[a-z0-9._-]{0,40}$",
        description="Broker users are named <prefix><identity> (gateway, auth, records, …).",
    )
    amqp_password: SecretStr | None = Field(
        default=None, description="This process's own broker password (from a secret)."
    )
    amqp_secrets_dir: Path | None = Field(
        default=None,
        description="A folder with one password file per broker identity (development mode "
        "makes it under var/dev-secrets/amqp; tests make their own).",
    )
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_user: str = "root"
    db_password: SecretStr = SecretStr("")
    db_prefix: str = Field(
        default="medihaven_",
        description="Each service keeps its tables in database `<db_prefix><service>`.",
    )
    db_pool_size: int = 10
    db_hosts: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9.:\[\]_-]*(,[A-Za-z0-9.:\[\]_-]+)*$",
        description="The nodes of a Galera cluster, `host:port,host:port,…`, tried in order "
        "(a service serves from the first usable one and moves on when it is lost); empty: "
        "the one server at db_host:db_port (or a proxy such as MaxScale in front of a cluster).",
    )
    db_sync_wait: int | None = Field(
        default=None,
        ge=0,
        le=15,
        description="Galera `wsrep_sync_wait` for every session: 1 makes each read wait until "
        "the node has applied what the cluster committed before it (a service reads its own "
        "and other services' writes even after moving to another node). Default: 1 with a "
        "db_hosts list, else not set (set it to 1 behind a proxy such as MaxScale).",
    )
    db_retry_attempts: int = Field(
        default=8,
        ge=1,
        le=20,
        description="Tries of one transaction rolled back by a deadlock or Galera "
        "certification conflict (jittered backoff between them).",
    )
    db_connect_timeout_s: float = Field(default=3.0, gt=0)
    db_stall_timeout_s: float = Field(
        default=5.0,
        ge=1,
        description="A database connection whose server stops acknowledging (a network "
        "partition, a dead host: packets silently dropped) fails after this long instead of "
        "the kernel's ~15 minutes of retransmissions, and the pool moves to another node. "
        "A server that is only slow still acknowledges: long statements are not cut short.",
    )
    db_prefer_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="With db_hosts: how often a service serving from a later node checks "
        "whether an earlier one is usable again (and moves back to it).",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="The single Redis (it may hold a password: masked when settings are shown).",
    )
    redis_prefix: str = Field(
        default="medihaven:",
        pattern=r"^[^{}]*$",
        description="Put before every Redis key; no braces (keys carry their account's hash tag).",
    )
    keyvault_redis_url: SecretStr | None = Field(
        default=None,
        description="Where the keyvault keeps its ledger of signed requests already served "
        "(default: redis_url; in production its own Redis user or instance).",
    )
    redis_sentinels: str = Field(
        default="",
        description="Comma-separated host:port of Redis Sentinels. Set: the gateway (and the "
        "keyvault, unless keyvault_redis_url names a URL) find the Redis master through them "
        "and follow a failover; empty (the default): redis_url, a single Redis.",
    )
    redis_sentinel_master: str = _master_name(
        "medihaven", "The master name the Sentinels monitor for the gateway's nonces and buckets."
    )
    keyvault_redis_sentinel_master: str | None = _master_name(
        None,
        "The master name for the keyvault's ledger (default: redis_sentinel_master; "
        "in production another master, so one failover cannot lose both records of a request).",
    )
    keyvault_ledger_acks: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Replicas that must hold a keyvault ledger claim (Redis WAIT) before it "
        "counts; 1 on a Sentinel set with 2 replicas: a claim survives any one node's loss.",
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Password of the Redis master found through Sentinel."
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="Password of the Sentinels themselves, if they require one."
    )

    rpc_deadline_s: float = Field(default=5.0, gt=0, description="Default per-call deadline.")
    rpc_prefetch: int = Field(
        default=32, ge=1, description="Requests one replica works on at once."
    )
    rpc_watch_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often a replica checks with the broker that it still consumes its "
        "request queue (renewed after two misses in a row: mesh.watchdog).",
    )
    outbox_poll_s: float = 0.5
    outbox_retention_s: float = Field(
        default=86_400, gt=0, description="How long sent outbox rows are kept."
    )
    idempotency_retention_s: float = Field(
        default=7 * 86_400,
        gt=0,
        description="How long a write's idempotency record (and its reply) is kept: a client "
        "retrying a write later than this makes it anew.",
    )
    processed_retention_s: float = Field(
        default=7 * 86_400,
        gt=0,
        description="How long a consumer remembers an event it processed (redeliveries).",
    )
    retention_interval_s: float = Field(
        default=600, gt=0, description="How often those are pruned."
    )
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

    fhir_export_page: int = Field(
        default=20,
        ge=1,
        le=200,
        description="Patients per page of a FHIR bulk export (one keyvault call a page).",
    )
    fhir_export_page_delay_s: float = Field(
        default=0.0,
        ge=0.0,
        le=60.0,
        description="A pause between a bulk export's pages (spares a busy clinic; tests "
        "use it to stop a run mid-way).",
    )

    clinic_timezone: str = Field(
        default="Europe/Berlin",
        description="IANA time zone of the clinic: working hours and calendar days are "
        "wall-clock times there (DST-aware); times on the wire are UTC.",
    )

    clinic_region: str = Field(
        default="DE",
        description="ISO 3166-1 alpha-2 region of the clinic: phone numbers written without "
        "a country code are numbers of it (set once: it changes their search tokens).",
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
    care_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long the keyvault keeps records' yes to a care check (a no is "
        "always asked again): access ends at most this long after a care relationship.",
    )
    break_glass_hours: float = Field(
        default=4, gt=0, description="How long emergency (break-glass) access lasts."
    )
    drug_knowledge: Path | None = Field(
        default=None,
        description="The clinic's drug vocabulary (ingredients, classes, cross-sensitivities, "
        "interactions) as JSON; unset: the shipped SAMPLE data (not clinical advice).",
    )

    attendance_required: bool | None = Field(
        default=None,
        description="Bind physicians' and receptionists' patient-data access to attendance. "
        "Unset: on, except in development mode (`make run`); the test suite sets it off and "
        "turns it on where it tests it (see `attendance_enforced`).",
    )
    attendance_max_shift_h: float = Field(
        default=12, gt=0, le=48, description="A shift without a check-out ends by itself then."
    )
    attendance_off_duty_physician: str = _off_duty("physician", "calendar,chat")
    attendance_off_duty_receptionist: str = _off_duty("receptionist", "chat")
    attendance_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The time-clock webhook's HMAC-SHA-256 key (at least 32 bytes; unset: the "
        "webhook is refused). Only auth needs it.",
    )
    attendance_webhook_window_s: float = Field(
        default=300, gt=0, le=3600, description="How old a webhook's timestamp may be."
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

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: str) -> str:
        parse_hostports(value)
        return value.strip()

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """`redis_sentinels` as (host, port) pairs; empty: no Sentinel, redis_url is used."""
        return parse_hostports(self.redis_sentinels)

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

    @field_validator("clinic_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (ISO 3166-1 alpha-2, e.g. DE)")
        return value.upper()

    def broker_user(self, identity: str) -> str:
        """The RabbitMQ user of a broker identity (also the AMQP `user_id` it sets)."""
        return f"{self.amqp_user_prefix}{identity}"

    def identity_of(self, user_id: str | bytes | None) -> str | None:
        """The identity behind a broker-validated `user_id`, or None (unknown, or absent)."""
        if isinstance(user_id, bytes):
            user_id = user_id.decode(errors="replace")
        if not user_id or not user_id.startswith(self.amqp_user_prefix):
            return None
        return user_id[len(self.amqp_user_prefix) :] or None

    def secrets_dir(self) -> Path | None:
        if self.amqp_secrets_dir is not None:
            return self.amqp_secrets_dir
        if self.dev_mode:
            return DEV_SECRETS / "amqp"
        return None

    def amqp_url_for(self, identity: str) -> str:
        """The URL `identity` connects with: its own user and password.

        A URL that already carries credentials is used as it is (one identity per
        process, e.g. a URL from a secret); otherwise the password is
        `MEDIHAVEN_AMQP_PASSWORD` or the identity's file in `amqp_secrets_dir`.
        """
        url = self.amqp_url.get_secret_value()
        parts = urlsplit(url)
        if parts.username:
            return url
        password = self.amqp_password.get_secret_value() if self.amqp_password else None
        folder = self.secrets_dir()
        if password is None and folder is not None and (folder / identity).is_file():
            password = (folder / identity).read_text().strip()
        if not password:
            raise RuntimeError(
                f"no broker password for {identity!r}: set MEDIHAVEN_AMQP_PASSWORD, or "
                f"MEDIHAVEN_AMQP_SECRETS_DIR to a folder with a file named {identity!r} "
                "(`make run` makes them in development mode)"
            )
        user = quote(self.broker_user(identity), safe="")
        netloc = f"{user}:{quote(password, safe='')}@{parts.hostname or '127.0.0.1'}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def amqp_urls_for(self, identity: str) -> list[str]:
        """Every node's URL for `identity`, in `amqp_nodes` order (`amqp_url_for`, with each
        node's host and port); just `amqp_url_for` when there is no node list."""
        url = self.amqp_url_for(identity)
        if not self.amqp_nodes:
            return [url]
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        urls = []
        for address in self.amqp_nodes.split(","):
            netloc = f"{credentials}@{address}" if credentials else address
            urls.append(urlunsplit(parts._replace(netloc=netloc)))
        return urls

    @property
    def attendance_enforced(self) -> bool:
        """On in production unless turned off; off in development mode unless turned on."""
        if self.attendance_required is not None:
            return self.attendance_required
        return not self.dev_mode

    def db_session_sync_wait(self) -> int:
        """The `wsrep_sync_wait` sessions set (0: none is set)."""
        if self.db_sync_wait is not None:
            return self.db_sync_wait
        return 1 if len(self.db_addresses()) > 1 else 0

    def db_addresses(self) -> list[tuple[str, int]]:
        """Where the database is: the `db_hosts` list, or `db_host:db_port`."""
        if not self.db_hosts:
            return [(self.db_host, self.db_port)]
        found = []
        for item in self.db_hosts.split(","):
            host, sep, port = item.strip().rpartition(":")
            found.append((host.strip("[]"), int(port)) if sep else (item.strip(), self.db_port))
        return found

    def database(self, service: str) -> str:
        """Name of the MariaDB database that belongs to `service`."""
        return f"{self.db_prefix}{service}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests construct `Settings` directly)."""
    return Settings()
