"""`mesh.settings`: what every process reads from `MEDIHAVEN_*`, and the addresses,
names and URLs it derives from them (pure: nothing is connected to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from mesh.settings import Settings, parse_hostports


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "amqp_url": SecretStr("amqp://127.0.0.1:5672/medihaven"),
        "amqp_user_prefix": "mh-",
        "amqp_password": SecretStr("pw/with:odd@chars"),
        "amqp_nodes": "",
        "db_hosts": "",
        "db_prefix": "medihaven_",
        "dev_mode": False,
    }
    return Settings(**{**base, **values})


def test_host_port_lists_parse_ipv6_and_name_a_bad_entry() -> None:
    assert parse_hostports("a:1, [::1]:2,") == [("a", 1), ("::1", 2)]
    with pytest.raises(ValueError, match="'b' is not host:port"):
        parse_hostports("a:1,b")
    with pytest.raises(ValueError, match="is not host:port"):
        parse_hostports("user@a:1")


def test_each_identity_connects_as_its_own_broker_user_with_its_password_quoted() -> None:
    url = settings().amqp_url_for("records")
    assert url == "amqp://mh-records:pw%2Fwith%3Aodd%40chars@127.0.0.1:5672/medihaven"
    assert settings().identity_of(b"mh-records") == "records"
    assert settings().identity_of("someone-else") is None
    assert settings().identity_of("mh-") is None


def test_a_url_with_its_own_credentials_is_used_as_it_is() -> None:
    given = "amqp://svc:secret@broker:5672/v"
    assert settings(amqp_url=SecretStr(given)).amqp_url_for("records") == given


def test_no_password_anywhere_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="MEDIHAVEN_AMQP_PASSWORD"):
        settings(amqp_password=None, amqp_secrets_dir=tmp_path).amqp_url_for("records")
    (tmp_path / "records").write_text("from-file\n")
    url = settings(amqp_password=None, amqp_secrets_dir=tmp_path).amqp_url_for("records")
    assert url.startswith("amqp://mh-records:from-file@")


def test_every_node_of_a_cluster_gets_the_identitys_credentials_in_order() -> None:
    urls = settings(amqp_nodes="n1:5672,n2:5673").amqp_urls_for("chat")
    assert urls == [
        "amqp://mh-chat:pw%2Fwith%3Aodd%40chars@n1:5672/medihaven",
        "amqp://mh-chat:pw%2Fwith%3Aodd%40chars@n2:5673/medihaven",
    ]
    assert settings().amqp_urls_for("chat") == [settings().amqp_url_for("chat")]


def test_database_addresses_and_galera_read_your_writes() -> None:
    single = settings(db_host="db", db_port=3307)
    assert single.db_addresses() == [("db", 3307)]
    assert single.db_session_sync_wait() == 0
    galera = settings(db_hosts="g1:3306,[::1]:3307,g3", db_port=3310)
    assert galera.db_addresses() == [("g1", 3306), ("::1", 3307), ("g3", 3310)]
    assert galera.db_session_sync_wait() == 1  # several nodes: wait for the caller's writes
    assert settings(db_hosts="g1:3306,g2:3306", db_sync_wait=0).db_session_sync_wait() == 0
    assert settings().database("records") == "medihaven_records"


def test_attendance_is_enforced_in_production_and_not_in_development() -> None:
    assert settings().attendance_enforced
    assert not settings(dev_mode=True).attendance_enforced
    assert settings(dev_mode=True, attendance_required=True).attendance_enforced


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("clinic_timezone", "Mars/Olympus", "unknown time zone"),
        ("clinic_region", "XX", "unknown region"),
        ("redis_sentinels", "s1:26379,nonsense", "is not host:port"),
        ("rpc_watch_s", 0, "greater than 0"),
        ("rpc_prefetch", 0, "greater than or equal to 1"),
    ],
)
def test_a_bad_setting_is_refused_at_start_naming_what_is_wrong(
    field: str, value: object, says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**{field: value})


def test_secrets_never_show_in_the_settings_text() -> None:
    shown = f"{settings()!r} {settings()}"
    assert "pw/with:odd@chars" not in shown
