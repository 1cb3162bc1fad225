"""mesh/preflight.py, beyond what tests/test_servers.py runs end to end: a problem line
never carries a password (refused or unreachable, for each server), and migrating every
service's database again applies nothing."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr

from contracts.common import SERVICES
from mesh.preflight import check_dependencies, migrate_all
from mesh.settings import Settings
from tests.conftest import session_settings

PASSWORD = "pw-" + secrets.token_hex(12)


async def test_all_answering_means_no_problems(settings: Settings) -> None:
    assert await check_dependencies(settings) == []


@pytest.mark.parametrize("port", ["real", "closed"])
async def test_a_problem_line_names_the_setting_but_never_the_password(
    settings: Settings, port: str
) -> None:
    amqp_port, db_port, redis_port = (5672, settings.db_port, 6379) if port == "real" else (1,) * 3
    bad = settings.model_copy(
        update={
            "amqp_url": SecretStr(f"amqp://nobody:{PASSWORD}@127.0.0.1:{amqp_port}/"),
            "db_password": SecretStr(PASSWORD),
            "db_port": db_port,
            "redis_url": f"redis://nobody:{PASSWORD}@127.0.0.1:{redis_port}/0",
        }
    )
    problems = await check_dependencies(bad)
    text = "\n".join(problems)
    assert [p.split(" ", 1)[0] for p in problems] == ["RabbitMQ", "MariaDB", "Redis"], text
    for setting in ("MEDIHAVEN_AMQP_URL", "MEDIHAVEN_DB_HOST", "MEDIHAVEN_REDIS_URL"):
        assert setting in text
    assert PASSWORD not in text


async def test_migrating_again_applies_nothing(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = session_settings(vhost, tag="preflight_")  # dropped with the session's
    await migrate_all(settings)
    first = capsys.readouterr().out
    await migrate_all(settings)
    again = capsys.readouterr().out.splitlines()
    assert len(again) == len(SERVICES)
    for service, line in zip(SERVICES, again, strict=True):
        assert line == f"  {settings.database(service)}: 0 migration(s) applied"
        assert f"{settings.database(service)}: 0 migration" not in first
