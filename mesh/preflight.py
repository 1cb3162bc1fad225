"""`python -m mesh.preflight`: bring up and check RabbitMQ, MariaDB and Redis, then migrate.

Used by `make run` before starting the processes. In development mode it first brings up
the servers the settings point at on this machine (`mesh/servers.py`: it starts one that is
installed but not running, runs a missing one with Docker, or says how to install it), then
makes the mesh's broker users (one per identity, passwords generated into the git-ignored
`var/dev-secrets/amqp/`) with `rabbitmqctl`, or over the broker's management API where
`rabbitmqctl` is not installed (a broker in Docker), and says so. A dependency that still
does not answer is reported once, clearly, with the setting to change.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from contracts.base import OPERATOR
from contracts.common import SERVICES
from mesh import amqp, broker, servers
from mesh.db import connect_any, ensure_database
from mesh.migrations import apply_migrations
from mesh.redis import create_redis
from mesh.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]

HOW_TO_START = "python3 mesh/servers.py up (`make run` does it in development mode)"
DEV_BROKER_ADMIN = ("guest", "guest")
"""Development mode: the management API's administrator unless MEDIHAVEN_BROKER_ADMIN_USER
and _PASSWORD say otherwise. RabbitMQ lets guest in from the loopback only; the broker of
deploy/compose.dev.yaml lets it in from the host too (published on 127.0.0.1 only)."""
ADMIN_API_WAIT_S = 30.0


def server_targets(settings: Settings) -> list[servers.Target]:
    """The servers the settings point at, for `mesh.servers.up`."""
    return servers.targets(
        amqp_url=settings.amqp_url.get_secret_value(),
        db_host=settings.db_host,
        db_port=settings.db_port,
        db_password=settings.db_password.get_secret_value(),
        redis_url=settings.redis_url.get_secret_value(),
        admin_url=os.environ.get("MEDIHAVEN_BROKER_ADMIN_URL"),
    )


def broker_admin(settings: Settings) -> tuple[str, str, str]:
    """The management API's URL, user and password (development defaults: the broker's
    host, port 15672, guest)."""
    host = urlsplit(settings.amqp_url.get_secret_value()).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    env = os.environ
    return (
        env.get("MEDIHAVEN_BROKER_ADMIN_URL") or f"http://{host}:{servers.DEFAULT_ADMIN_PORT}",
        env.get("MEDIHAVEN_BROKER_ADMIN_USER") or DEV_BROKER_ADMIN[0],
        env.get("MEDIHAVEN_BROKER_ADMIN_PASSWORD") or DEV_BROKER_ADMIN[1],
    )


def provision_broker_users(settings: Settings, folder: Path) -> str:
    """Make the mesh's broker users: with `rabbitmqctl` when it is installed here, else over
    the management API (`python -m mesh.broker provision --via http`). Says how."""
    if shutil.which("rabbitmqctl") is not None:
        broker.provision(settings, folder)
        return "rabbitmqctl"
    url, user, password = broker_admin(settings)
    deadline = time.monotonic() + ADMIN_API_WAIT_S
    while True:
        try:
            broker.provision_via_http(settings, folder, url, user, password)
            return f"the management API at {url} (rabbitmqctl is not installed here)"
        except httpx.TransportError:  # the API starts a moment after the AMQP port
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


async def _check_rabbitmq(settings: Settings) -> None:
    folder = settings.secrets_dir()
    if settings.dev_mode and folder is not None:
        try:
            how = await asyncio.to_thread(provision_broker_users, settings, folder)
        except (OSError, RuntimeError, httpx.HTTPError) as exc:
            raise RuntimeError(
                f"could not make the broker users ({exc}); run `python -m mesh.broker "
                "provision` as a user who may use rabbitmqctl, or `python -m mesh.broker "
                "provision --via http` with MEDIHAVEN_BROKER_ADMIN_URL, _USER and _PASSWORD"
            ) from None
        print(
            f"Development mode: broker users {settings.broker_user('<identity>')} made with "
            f"{how}, passwords in {folder} (never use MEDIHAVEN_DEV_MODE in production)"
        )
    connection = await amqp.connect_once(settings.amqp_urls_for(OPERATOR), timeout=3)
    await connection.close()


async def _check_mariadb(settings: Settings) -> None:
    """The server, or (MEDIHAVEN_DB_HOSTS) a usable node of the cluster."""
    conn, _ = await asyncio.wait_for(connect_any(settings), 3 * len(settings.db_addresses()))
    conn.close()


async def _check_redis(settings: Settings) -> None:
    client = create_redis(settings)
    try:
        await client.ping()
    finally:
        await client.aclose()


Check = Callable[[Settings], Awaitable[None]]
CHECKS: list[tuple[str, str, Check]] = [
    ("RabbitMQ", "MEDIHAVEN_AMQP_URL", _check_rabbitmq),
    (
        "MariaDB",
        "MEDIHAVEN_DB_HOST / MEDIHAVEN_DB_PORT (or MEDIHAVEN_DB_HOSTS) / MEDIHAVEN_DB_USER",
        _check_mariadb,
    ),
    ("Redis", "MEDIHAVEN_REDIS_URL", _check_redis),
]
SETTINGS = {name: setting for name, setting, _ in CHECKS}


async def check_dependencies(settings: Settings, skip: Collection[str] = ()) -> list[str]:
    """Problems found, one readable line each (empty when all answer); `skip`: the names of
    servers already reported."""
    problems = []
    for name, setting, check in CHECKS:
        if name in skip:
            continue
        try:
            await check(settings)
        except Exception as exc:
            problems.append(
                f"{name} does not answer ({type(exc).__name__}: {exc}).\n"
                f"    Setting: {setting}\n    Start it locally with: {HOW_TO_START}"
            )
    return problems


async def bring_up_servers(settings: Settings) -> servers.Outcome:
    """Development mode: start the local servers that do not answer (`mesh/servers.py`)."""
    try:
        return await asyncio.to_thread(servers.up, server_targets(settings))
    except Exception as exc:  # the checks below still say what does not answer
        print(f"could not bring up the servers: {type(exc).__name__}: {exc}", file=sys.stderr)
        return servers.Outcome()


async def migrate_all(settings: Settings) -> None:
    for service in SERVICES:
        database = settings.database(service)
        await ensure_database(settings, database)
        applied = await apply_migrations(
            settings, database, ROOT / "services" / service / "migrations"
        )
        print(f"  {database}: {len(applied)} migration(s) applied")


async def main() -> int:
    settings = get_settings()
    outcome = await bring_up_servers(settings) if settings.dev_mode else servers.Outcome()
    problems = [f"{why}\n    Setting: {SETTINGS[name]}" for name, why in outcome.problems.items()]
    problems += await check_dependencies(settings, skip=outcome.problems)
    if problems:
        print("Medihaven cannot start:\n", file=sys.stderr)
        for problem in problems:
            print("  - " + problem, file=sys.stderr)
        if outcome.advice:
            print("", *outcome.advice, sep="\n", file=sys.stderr)
        return 1
    print("RabbitMQ, MariaDB and Redis answer. Applying migrations:")
    await migrate_all(settings)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
