"""mesh/logging.py: secrets never reach the log. A traceback shows no local variables
(a frame may hold key bytes), settings show their secrets masked, in both the JSON and
the console format; and every JSON line names the service and the call's trace."""

from __future__ import annotations

import io
import json
import logging
import secrets
import sys
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from mesh import db
from mesh.logging import configure_logging, get_logger
from mesh.settings import Settings


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    """What the process writes to stderr while configured in the test (pytest swaps
    sys.stderr between setup and call, so the test swaps it itself with `writing_to`);
    the session's logging configuration restored after."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    context = structlog.contextvars.get_contextvars()
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        structlog.configure(**config)
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context)


def configured(buffer: io.StringIO, service: str, settings: Settings) -> None:
    """configure_logging as a process does, its stderr being `buffer`."""
    saved, sys.stderr = sys.stderr, buffer
    try:
        configure_logging(service, settings)
    finally:
        sys.stderr = saved


def unwrap_with(share: str) -> None:
    unseal_share = share  # noqa: F841 (a local that a rich or dict traceback would print)
    raise ValueError("tag mismatch")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_logged_traceback_shows_no_local_variables(stderr: io.StringIO, log_format: str) -> None:
    configured(stderr, "keyvault", Settings(log_format=log_format))
    share = secrets.token_hex(16)
    try:
        unwrap_with(share)
    except ValueError:
        structlog.get_logger("t").exception("unwrap.failed")
    out = stderr.getvalue()
    assert "unwrap.failed" in out and "tag mismatch" in out  # logged, with its traceback
    assert "unwrap_with" in out
    assert share not in out
    assert "unseal_share" not in out


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_settings_in_a_log_line_show_their_secrets_masked(
    stderr: io.StringIO, log_format: str
) -> None:
    password = secrets.token_urlsafe(16)
    settings = Settings(
        log_format=log_format,
        db_password=SecretStr(password),
        amqp_url=SecretStr(f"amqp://medihaven:{password}@127.0.0.1:5672/"),
        redis_url=SecretStr(f"redis://medihaven:{password}@127.0.0.1:6379/0"),
        keyvault_redis_url=SecretStr(f"redis://keyvault:{password}@127.0.0.1:6379/1"),
    )
    configured(stderr, "records", settings)
    log = structlog.get_logger("t")
    log.info("settings", settings=settings, db_password=settings.db_password)
    log.info("url", amqp_url=settings.amqp_url, redis_url=settings.redis_url)
    out = stderr.getvalue()
    assert out.count("\n") >= 2
    assert password not in out


def test_json_lines_name_the_service_and_the_trace(stderr: io.StringIO) -> None:
    configured(stderr, "scheduling", Settings(log_format="json", log_level="info"))
    structlog.contextvars.bind_contextvars(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    log = get_logger("mesh.test")
    log.debug("hidden")
    log.info("shown", n=1)
    lines = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["shown"]
    assert lines[0]["service"] == "scheduling"
    assert lines[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert lines[0]["logger"] == "mesh.test" and lines[0]["level"] == "info"


async def test_the_database_servers_warnings_never_reach_the_log(
    stderr: io.StringIO, settings: Settings
) -> None:
    """The driver logs the server's warnings, and a duplicate key's quotes the value."""
    configured(stderr, "tests", Settings(log_format="json"))
    name = f"{settings.db_prefix}logwarn_{secrets.token_hex(4)}"
    await db.ensure_database(settings, name)
    database = await db.Database.connect(settings, name)
    token = secrets.token_hex(16)
    try:
        await database.execute("CREATE TABLE seen (k VARCHAR(64) PRIMARY KEY)")
        await database.execute("INSERT INTO seen VALUES (%s)", (token,))
        assert await database.execute("INSERT IGNORE INTO seen VALUES (%s)", (token,)) == 0
    finally:
        await database.execute(f"DROP DATABASE `{name}`")
        await database.close()
    assert token not in stderr.getvalue()
