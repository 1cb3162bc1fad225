"""tests/session_servers.py: which servers a test session uses (pure: no Docker needed, and
the servers of this session are not touched)."""

from __future__ import annotations

import pytest

from tests import session_servers
from tests.session_servers import SERVER_SETTINGS, Choice, choose


class Docker:
    """A stand-in for `docker_answers` that counts how often it was asked."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.answers


@pytest.mark.parametrize("name", SERVER_SETTINGS)
@pytest.mark.parametrize("answers", [True, False])
def test_a_server_named_in_the_environment_is_used_and_docker_is_not_asked(
    name: str, answers: bool
) -> None:
    docker = Docker(answers)
    assert choose({name: "somewhere", "HOME": "/home/x"}, docker) is Choice.GIVEN
    assert docker.asked == 0


def test_names_are_compared_without_case_as_the_settings_read_them() -> None:
    docker = Docker(True)
    assert choose({"medihaven_db_host": "10.0.0.7"}, docker) is Choice.GIVEN
    assert docker.asked == 0


@pytest.mark.parametrize("answers", [True, False])
def test_ci_always_uses_the_machines_servers(answers: bool) -> None:
    docker = Docker(answers)
    assert choose({"CI": "true"}, docker) is Choice.GIVEN
    assert docker.asked == 0


def test_no_server_named_and_docker_answering_means_containers() -> None:
    docker = Docker(True)
    unrelated = {"MEDIHAVEN_LOG_FORMAT": "console", "MEDIHAVEN_DB_PREFIX": "x_", "PATH": "/bin"}
    assert choose(unrelated, docker) is Choice.CONTAINERS
    assert docker.asked == 1


def test_no_server_named_and_no_docker_means_the_local_defaults() -> None:
    docker = Docker(False)
    assert choose({}, docker) is Choice.LOCAL
    assert docker.asked == 1


def test_an_empty_value_names_nothing() -> None:
    docker = Docker(True)
    assert choose({"MEDIHAVEN_AMQP_NODES": "", "CI": ""}, docker) is Choice.CONTAINERS
    assert docker.asked == 1


def test_every_server_setting_of_mesh_settings_is_listed() -> None:
    from mesh.settings import Settings

    servers = {"amqp_url", "amqp_nodes", "db_host", "db_port", "db_user", "db_password"}
    servers |= {"db_hosts", "redis_url", "keyvault_redis_url", "redis_sentinels"}
    assert servers <= set(Settings.model_fields)
    listed = {name.removeprefix("MEDIHAVEN_").lower() for name in SERVER_SETTINGS}
    assert listed == servers | {"broker_admin_url"}


def test_docker_answers_is_false_when_no_engine_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: the ping fails quickly, and that is "no", never an error.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert session_servers.docker_answers(timeout_s=1.0) is False


class Started:
    """A started container as `environment` sees it (host, and the published ports)."""

    def __init__(self, host: str, ports: dict[int, int]) -> None:
        self.host, self.ports = host, ports

    def get_container_host_ip(self) -> str:
        return self.host

    def get_exposed_port(self, port: int) -> int:
        return self.ports[port]


def test_the_containers_environment_points_the_settings_at_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mesh.settings import Settings

    env = session_servers.environment(
        Started("localhost", {5672: 32771, 15672: 32772}),
        Started("localhost", {3306: 32773}),
        Started("::1", {6379: 32774}),
        "pw",
    )
    assert set(session_servers.given_settings(env)) >= {
        "MEDIHAVEN_AMQP_URL",
        "MEDIHAVEN_DB_HOST",
        "MEDIHAVEN_REDIS_URL",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.amqp_url.get_secret_value() == "amqp://127.0.0.1:32771/"
    assert (settings.db_host, settings.db_port, settings.db_user) == ("127.0.0.1", 32773, "root")
    assert settings.db_password.get_secret_value() == "pw"
    assert settings.redis_url.get_secret_value() == "redis://[::1]:32774/0"
    assert session_servers.broker_admin(env) == session_servers.BrokerAdmin(
        "http://127.0.0.1:32772", "guest", "guest"
    )
