"""Test fixtures: real RabbitMQ, MariaDB and Redis, isolated per test session.

Each session gets its own RabbitMQ vhost, database-name prefix and Redis key prefix, and
removes them at the end. Service addresses come from `MEDIHAVEN_*` variables (defaults:
the local services); `MEDIHAVEN_TEST_VHOST=0` skips the vhost (e.g. a broker where
`rabbitmqctl` is not at hand), using unique names in the default vhost instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import pytest_asyncio

from mesh.db import drop_databases
from mesh.logging import configure_logging
from mesh.settings import Settings

RUN_ID = secrets.token_hex(3)


def _with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _use_vhosts() -> bool:
    return os.environ.get("MEDIHAVEN_TEST_VHOST") != "0" and shutil.which("rabbitmqctl") is not None


def create_vhost(name: str) -> None:
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def vhost() -> Iterator[str | None]:
    if not _use_vhosts():
        yield None
        return
    name = f"medihaven-test-{RUN_ID}"
    create_vhost(name)
    yield name
    delete_vhost(name)


def session_settings(vhost: str | None, tag: str = "") -> Settings:
    """Settings isolated by vhost, database prefix and Redis prefix (tag: a sub-namespace)."""
    base = Settings()
    amqp = base.amqp_url.get_secret_value()
    return base.model_copy(
        update={
            "amqp_url": type(base.amqp_url)(_with_vhost(amqp, vhost) if vhost else amqp),
            "db_prefix": f"mhtest_{RUN_ID}_{tag}",
            "redis_prefix": f"mhtest:{RUN_ID}:{tag}",
            "rpc_deadline_s": 5.0,
            "outbox_poll_s": 0.1,
            "shutdown_grace_s": 5.0,
            "log_format": "console",
        }
    )


@pytest.fixture(scope="session")
def settings(vhost: str | None) -> Settings:
    configure_logging("tests", Settings(log_format="console"))
    return session_settings(vhost)


@contextmanager
def isolated_settings(tag: str) -> Iterator[Settings]:
    """A namespace of its own (vhost, databases, Redis keys) for tests whose services must
    not meet the session's, e.g. a keyvault with its own seal state. Databases are dropped
    with the session's (same prefix root)."""
    name = f"medihaven-test-{RUN_ID}-{tag}"
    use_vhost = _use_vhosts()
    if use_vhost:
        create_vhost(name)
    try:
        yield session_settings(name if use_vhost else None, tag=f"{tag}_")
    finally:
        if use_vhost:
            delete_vhost(name)


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def drop_test_databases(settings: Settings) -> AsyncIterator[None]:
    """Remove every database this session created (isolated ones share the prefix)."""
    yield
    await drop_databases(settings)
