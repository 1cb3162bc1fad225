"""Which RabbitMQ, MariaDB and Redis a test session uses, and containers for a laptop.

`choose` decides, from the environment and whether a Docker engine answers:

- the servers the environment names, when any `MEDIHAVEN_*` server setting is set
  (`SERVER_SETTINGS`), and always under `CI` (CI uses the machine's own servers);
- otherwise, when a Docker engine answers: RabbitMQ, MariaDB and Redis containers that
  `containers()` starts with testcontainers for the session (and removes at its end);
- otherwise the local servers on their standard ports (`mesh/settings.py`'s defaults).

tests/conftest.py asks at `pytest_configure`, before any test module reads its settings, and
points the session at the containers through the same `MEDIHAVEN_*` variables (child
processes inherit them). The containers' broker has no `rabbitmqctl` on this machine, so the
session's broker users and vhosts are made over its management API (`BrokerAdmin`, the
same definitions document `mesh.broker.provision_via_http` posts for `make run`).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from mesh import broker
from mesh.settings import ROOT, Settings

SERVER_SETTINGS = (
    "MEDIHAVEN_AMQP_URL",
    "MEDIHAVEN_AMQP_NODES",
    "MEDIHAVEN_DB_HOST",
    "MEDIHAVEN_DB_PORT",
    "MEDIHAVEN_DB_USER",
    "MEDIHAVEN_DB_PASSWORD",
    "MEDIHAVEN_DB_HOSTS",
    "MEDIHAVEN_REDIS_URL",
    "MEDIHAVEN_KEYVAULT_REDIS_URL",
    "MEDIHAVEN_REDIS_SENTINELS",
    "MEDIHAVEN_BROKER_ADMIN_URL",
)
"""The variables that name a server (mesh/settings.py's and the management API's): one of
them set, to anything but the empty string, means "use these servers"."""

RABBITMQ_IMAGE = "rabbitmq:3.13-management"  # as deploy/compose.dev.yaml
MARIADB_IMAGE = "mariadb:11"
REDIS_IMAGE = "redis:7"
AMQP_PORT, ADMIN_PORT, DB_PORT, REDIS_PORT = 5672, 15672, 3306, 6379
GUEST = ("guest", "guest")
RABBITMQ_CONF = ROOT / "deploy" / "dev" / "rabbitmq.conf"
"""`loopback_users.guest = false`: guest may use the management API through a published
port (it arrives from Docker's bridge, not the loopback)."""
DOCKER_PING_TIMEOUT_S = 2.0


class Choice(enum.Enum):
    GIVEN = "the servers the environment names"
    CONTAINERS = "RabbitMQ, MariaDB and Redis containers (testcontainers)"
    LOCAL = "the local servers on their standard ports"


def given_settings(environ: Mapping[str, str]) -> list[str]:
    """The server settings set in `environ` (names compared without case, as pydantic
    settings reads them)."""
    wanted = set(SERVER_SETTINGS)
    return sorted(
        name.upper() for name, value in environ.items() if name.upper() in wanted and value
    )


def choose(environ: Mapping[str, str], docker_answers: Callable[[], bool]) -> Choice:
    """Which servers the session uses; `docker_answers` is only asked when the environment
    names none and this is not CI."""
    if environ.get("CI") or given_settings(environ):
        return Choice.GIVEN
    return Choice.CONTAINERS if docker_answers() else Choice.LOCAL


def docker_answers(timeout_s: float = DOCKER_PING_TIMEOUT_S) -> bool:
    """A Docker engine answers a ping where testcontainers would look for it (DOCKER_HOST,
    the Docker context, ~/.testcontainers.properties); anything that goes wrong: no."""
    try:
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=timeout_s).client
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no engine, no SDK, a refused or hung socket: all "no"
        return False


@dataclass(frozen=True)
class BrokerAdmin:
    """A broker's management API: the session's users and vhosts without `rabbitmqctl`."""

    url: str
    user: str
    password: str

    def provision(self, settings: Settings, folder: Path, identities: Sequence[str]) -> None:
        """The settings' vhost and the identities' users and permissions (one import)."""
        broker.provision_via_http(settings, folder, self.url, self.user, self.password, identities)

    def delete_vhost(self, name: str) -> None:
        self._delete(f"/api/vhosts/{quote(name, safe='')}")

    def delete_users(self, settings: Settings, identities: Sequence[str]) -> None:
        for identity in identities:
            self._delete(f"/api/users/{quote(settings.broker_user(identity), safe='')}")

    def _delete(self, path: str) -> None:
        import httpx

        response = httpx.delete(
            self.url.rstrip("/") + path, auth=(self.user, self.password), timeout=30
        )
        if response.status_code >= 300 and response.status_code != 404:
            raise RuntimeError(f"the broker refused DELETE {path} ({response.status_code})")


def broker_admin(environ: Mapping[str, str]) -> BrokerAdmin:
    """The management API `containers()` pointed the session at."""
    return BrokerAdmin(
        environ["MEDIHAVEN_BROKER_ADMIN_URL"],
        environ["MEDIHAVEN_BROKER_ADMIN_USER"],
        environ["MEDIHAVEN_BROKER_ADMIN_PASSWORD"],
    )


class Published(Protocol):
    """What `environment` needs of a started container (testcontainers' `DockerContainer`)."""

    def get_container_host_ip(self) -> str: ...
    def get_exposed_port(self, port: int) -> int: ...


def _host(container: Published) -> str:
    """Where the container's published ports are. 127.0.0.1 rather than `localhost`:
    MariaDB's client tools take `localhost` for the local Unix socket."""
    host = container.get_container_host_ip()
    return "127.0.0.1" if host == "localhost" else host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def environment(
    rabbitmq: Published, mariadb: Published, redis: Published, db_password: str
) -> dict[str, str]:
    """The `MEDIHAVEN_*` variables that point a session at the started containers."""
    broker = _url_host(_host(rabbitmq))
    return {
        "MEDIHAVEN_AMQP_URL": f"amqp://{broker}:{rabbitmq.get_exposed_port(AMQP_PORT)}/",
        "MEDIHAVEN_BROKER_ADMIN_URL": f"http://{broker}:{rabbitmq.get_exposed_port(ADMIN_PORT)}",
        "MEDIHAVEN_BROKER_ADMIN_USER": GUEST[0],
        "MEDIHAVEN_BROKER_ADMIN_PASSWORD": GUEST[1],
        "MEDIHAVEN_DB_HOST": _host(mariadb),
        "MEDIHAVEN_DB_PORT": str(mariadb.get_exposed_port(DB_PORT)),
        "MEDIHAVEN_DB_USER": "root",
        "MEDIHAVEN_DB_PASSWORD": db_password,
        "MEDIHAVEN_REDIS_URL": (
            f"redis://{_url_host(_host(redis))}:{redis.get_exposed_port(REDIS_PORT)}/0"
        ),
    }


@contextmanager
def containers() -> Iterator[dict[str, str]]:
    """Start RabbitMQ (with its management API), MariaDB (root, a generated password) and
    Redis, wait until each accepts connections, and yield the `MEDIHAVEN_*` variables that
    point a session at them (`environment`); remove them at the end. Testcontainers' reaper
    (Ryuk) removes them too should this process die first."""
    from testcontainers.community.mysql import MySqlContainer
    from testcontainers.community.redis import RedisContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import (
        CompositeWaitStrategy,
        HttpWaitStrategy,
        LogMessageWaitStrategy,
    )

    db_password = secrets.token_hex(16)
    rabbitmq = (
        # testcontainers' RabbitMqContainer needs pika, which the project does not use.
        DockerContainer(RABBITMQ_IMAGE)
        .with_exposed_ports(AMQP_PORT, ADMIN_PORT)
        .with_copy_into_container(RABBITMQ_CONF, "/etc/rabbitmq/conf.d/90-medihaven-test.conf")
        .waiting_for(
            CompositeWaitStrategy(
                LogMessageWaitStrategy("Server startup complete"),
                HttpWaitStrategy(ADMIN_PORT, "/api/overview").with_basic_credentials(*GUEST),
            )
        )
    )
    mariadb = MySqlContainer(MARIADB_IMAGE, username="root", password=db_password, port=DB_PORT)
    redis = RedisContainer(REDIS_IMAGE, port=REDIS_PORT)
    with ExitStack() as stack:
        for container in (rabbitmq, mariadb, redis):
            stack.enter_context(container)  # started and waited for; stopped on leaving
        yield environment(rabbitmq, mariadb, redis, db_password)
