"""`python -m mesh.preflight`: check RabbitMQ, MariaDB and Redis answer, then migrate.

Used by `make run` before starting the processes, so a missing dependency is reported
once, clearly, with the setting to change and the command that starts it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aio_pika
import aiomysql

from contracts.common import SERVICES
from mesh.db import ensure_database
from mesh.migrations import apply_migrations
from mesh.redis import create_redis
from mesh.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]

HOW_TO_START = {
    "RabbitMQ": "rabbitmq-server -detached",
    "MariaDB": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save ""',
}


async def _check_rabbitmq(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value(), timeout=3)
    await connection.close()


async def _check_mariadb(settings: Settings) -> None:
    conn = await asyncio.wait_for(
        aiomysql.connect(
            host=settings.db_host,
            port=settings.db_port,
            user=settings.db_user,
            password=settings.db_password.get_secret_value(),
        ),
        3,
    )
    conn.close()


async def _check_redis(settings: Settings) -> None:
    client = create_redis(settings)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def check_dependencies(settings: Settings) -> list[str]:
    """Problems found, one readable line each (empty when all answer)."""
    checks = [
        ("RabbitMQ", "MEDIHAVEN_AMQP_URL", _check_rabbitmq),
        ("MariaDB", "MEDIHAVEN_DB_HOST / MEDIHAVEN_DB_PORT / MEDIHAVEN_DB_USER", _check_mariadb),
        ("Redis", "MEDIHAVEN_REDIS_URL", _check_redis),
    ]
    problems = []
    for name, setting, check in checks:
        try:
            await check(settings)
        except Exception as exc:
            problems.append(
                f"{name} does not answer ({type(exc).__name__}: {exc}).\n"
                f"    Setting: {setting}\n    Start it locally with: {HOW_TO_START[name]}"
            )
    return problems


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
    problems = await check_dependencies(settings)
    if problems:
        print("Medihaven cannot start:\n", file=sys.stderr)
        for problem in problems:
            print("  - " + problem, file=sys.stderr)
        return 1
    print("RabbitMQ, MariaDB and Redis answer. Applying migrations:")
    await migrate_all(settings)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
