"""Test fixtures: real RabbitMQ, MariaDB and Redis, isolated per test session.

Each session gets its own RabbitMQ vhost and broker users (one per identity of the mesh,
plus a few for test fixtures, with passwords generated into a temporary folder), its own
database-name prefix and Redis key prefix, and removes them at the end. Service addresses
come from `MEDIHAVEN_*` variables (defaults: the local services); the broker users and
vhosts are made with `rabbitmqctl import_definitions`, so the tests need `rabbitmqctl`
on the broker's host.

When no `MEDIHAVEN_*` server setting is set, `CI` is not, and a Docker engine answers, the
session runs on RabbitMQ, MariaDB and Redis containers instead (`tests/session_servers.py`,
started in `pytest_configure`, before any test reads its settings). Their broker users and
vhosts are made over the broker's management API, so `rabbitmqctl` is not needed then.
What that does not cover: tests that drive a server with this machine's own tools
(`tests/faults` restarts the broker with `rabbitmqctl` and MariaDB with `start-stop-daemon`
by its pid file, the dump tests run `mariadb-dump` against the settings' host and port,
`tests/cluster` starts local clusters, and `tests/test_servers.py` runs its own
`redis-server`) still need those tools here and skip without them; with the tools
installed, `tests/faults`' restarts act on this machine's servers, not on the containers
(they would fail, not pass wrongly).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import pytest_asyncio
from redis.exceptions import RedisError

from contracts.common import IDENTITIES
from mesh import broker
from mesh.db import drop_databases
from mesh.logging import configure_logging
from mesh.redis import create_redis
from mesh.settings import Settings
from tests import session_servers

pytest_plugins = ["tests.ci_skips"]
RUN_ID = secrets.token_hex(3)
USER_PREFIX = f"mhtest-{RUN_ID}-"
TEST_IDENTITIES = ("testsvc", "testclient", "benchecho", "observer", "outsider")
"""Broker users of test fixtures (unconfined on the test vhosts, unknown to contracts)."""
ALL_IDENTITIES = (*IDENTITIES, *TEST_IDENTITIES)
SECRETS = Path(tempfile.mkdtemp(prefix="medihaven-test-amqp-"))
CONTAINER_BROKER: list[session_servers.BrokerAdmin] = []
"""The containers' management API when the session runs on containers (else empty)."""


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module reads its settings: with no server named, outside CI, and a
    Docker engine answering, start the containers and point the session (and the processes
    it starts, which inherit the environment) at them; they are removed at the end."""
    if config.option.collectonly or config.option.help or config.option.version:
        return
    if session_servers.choose(os.environ, session_servers.docker_answers) is not (
        session_servers.Choice.CONTAINERS
    ):
        return  # the given servers, or the local defaults: nothing to do
    stack = ExitStack()
    config.add_cleanup(stack.close)
    os.environ.update(stack.enter_context(session_servers.containers()))
    CONTAINER_BROKER.append(session_servers.broker_admin(os.environ))


def _with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def create_vhost(name: str) -> None:
    """The vhost, and every identity's user with its permissions there (one import)."""
    if CONTAINER_BROKER:
        CONTAINER_BROKER[0].provision(session_settings(name), SECRETS, ALL_IDENTITIES)
        return
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError("the tests make their broker users with rabbitmqctl; it is missing")
    broker.provision(session_settings(name), SECRETS, ALL_IDENTITIES)


def delete_vhost(name: str) -> None:
    if CONTAINER_BROKER:
        CONTAINER_BROKER[0].delete_vhost(name)
        return
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)


@pytest.fixture(scope="session", autouse=True)
def broker_users() -> Iterator[None]:
    """Remove the session's broker users and their passwords at the end."""
    yield
    if CONTAINER_BROKER:
        CONTAINER_BROKER[0].delete_users(session_settings(None), ALL_IDENTITIES)
    else:
        broker.delete_users(session_settings(None), ALL_IDENTITIES)
    shutil.rmtree(SECRETS, ignore_errors=True)


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    name = f"medihaven-test-{RUN_ID}"
    create_vhost(name)
    yield name
    delete_vhost(name)


def session_settings(vhost: str | None, tag: str = "") -> Settings:
    """Settings isolated by vhost, broker users, database prefix and Redis prefix (tag: a
    sub-namespace)."""
    base = Settings()
    amqp = base.amqp_url.get_secret_value()
    return base.model_copy(
        update={
            "amqp_url": type(base.amqp_url)(_with_vhost(amqp, vhost) if vhost else amqp),
            "amqp_user_prefix": USER_PREFIX,
            "amqp_secrets_dir": SECRETS,
            "db_prefix": f"mhtest_{RUN_ID}_{tag}",
            "redis_prefix": f"mhtest:{RUN_ID}:{tag}",
            "rpc_deadline_s": 5.0,
            "outbox_poll_s": 0.1,
            "care_cache_s": 1.0,  # a care relationship's end is seen within a second
            "shutdown_grace_s": 5.0,
            "log_format": "console",
            "attendance_required": False,  # tests/attendance turns it on
        }
    )


@pytest.fixture(scope="session")
def settings(vhost: str) -> Settings:
    configure_logging("tests", Settings(log_format="console"))
    return session_settings(vhost)


@contextmanager
def isolated_settings(tag: str) -> Iterator[Settings]:
    """A namespace of its own (vhost, databases, Redis keys) for tests whose services must
    not meet the session's, e.g. a keyvault with its own seal state. Databases are dropped
    with the session's (same prefix root)."""
    name = f"medihaven-test-{RUN_ID}-{tag}"
    create_vhost(name)
    try:
        yield session_settings(name, tag=f"{tag}_")
    finally:
        delete_vhost(name)


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def drop_test_databases(settings: Settings) -> AsyncIterator[None]:
    """Remove every database this session created (isolated ones share the prefix)."""
    yield
    await drop_databases(settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def drop_test_redis_keys(settings: Settings) -> AsyncIterator[None]:
    """Remove every Redis key this session made under its prefix (isolated ones share
    it): live logs, nonces, buckets, ledger claims; many have no expiry. A Redis gone by
    then leaves them, with a warning, rather than failing the run."""
    yield
    client = create_redis(settings)
    try:
        doomed: list[bytes] = []
        async for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            doomed.append(key)
            if len(doomed) >= 1000:
                await client.unlink(*doomed)
                doomed.clear()
        if doomed:
            await client.unlink(*doomed)
    except (RedisError, OSError) as exc:
        warnings.warn(f"the session's Redis keys were left: {exc}", stacklevel=1)
    finally:
        await client.aclose()
