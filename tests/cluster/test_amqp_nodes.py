"""The broker node list in settings and the connection's turn through it (no broker needed)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from yarl import URL

from mesh import amqp
from mesh.settings import Settings


def test_every_node_gets_the_urls_user_vhost_and_options() -> None:
    settings = Settings(
        amqp_url=SecretStr("amqp://broker:5672/clinic?heartbeat=10"),
        amqp_nodes="n1:5672,n2:5673,[::1]:5674",
        amqp_password=SecretStr("s3cret/+"),
        amqp_user_prefix="mh-",
    )
    assert settings.amqp_urls_for("records") == [
        "amqp://mh-records:s3cret%2F%2B@n1:5672/clinic?heartbeat=10",
        "amqp://mh-records:s3cret%2F%2B@n2:5673/clinic?heartbeat=10",
        "amqp://mh-records:s3cret%2F%2B@[::1]:5674/clinic?heartbeat=10",
    ]


def test_without_a_node_list_the_url_alone() -> None:
    settings = Settings(amqp_url=SecretStr("amqp://u:p@broker:5672/v"))
    assert settings.amqp_urls_for("records") == ["amqp://u:p@broker:5672/v"]


@pytest.mark.parametrize("nodes", ["n1", "n1:5672,", "n1:5672;n2:5672", "amqp://n1:5672"])
def test_a_malformed_node_list_is_refused(nodes: str) -> None:
    with pytest.raises(ValidationError):
        Settings(amqp_nodes=nodes)


async def test_each_connection_attempt_takes_the_next_node_and_hides_the_password() -> None:
    urls = ["amqp://u:pw@n1:1/v", "amqp://u:pw@n2:2/v", "amqp://u:pw@n3:3/v"]
    connection = amqp.ClusterConnection(URL(urls[0]), urls=urls)
    try:
        # aio-pika reads `url` once per attempt (Connection.connect)
        assert [connection.url.host for _ in range(4)] == ["n1", "n2", "n3", "n1"]
        assert connection.current_url.host == "n1"
        assert "pw" not in str(connection) and "n1" in str(connection)
    finally:
        await connection.close()
