"""A namespace of its own for each benchmark: a RabbitMQ vhost with the mesh's broker
users (passwords in a temporary folder), a database prefix and a Redis prefix, so a
benchmark never meets a running mesh (`make run`) or a test session, and cleans up."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from contracts.common import IDENTITIES
from mesh import broker
from mesh.settings import Settings, get_settings

BENCH_IDENTITIES = ("benchecho", "testclient", "observer")
"""Benchmark fixtures' own broker users (the echo server, raw clients, event watchers)."""


@contextmanager
def namespace(
    tag: str, *, engines: Mapping[str, Any] | None = None, broker_node: str | None = None
) -> Iterator[Settings]:
    """`engines`: settings that point at other engines than the machine's own (the
    clustered ones of `bench.clustered`), `broker_node` the RabbitMQ node to provision."""
    run = secrets.token_hex(3)
    folder = Path(tempfile.mkdtemp(prefix="medihaven-bench-amqp-"))
    base = get_settings().model_copy(update=dict(engines or {}))
    parts = urlsplit(base.amqp_url.get_secret_value())
    vhost = f"medihaven-bench-{tag}-{run}"
    url = urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    settings = base.model_copy(
        update={
            "amqp_url": type(base.amqp_url)(url),
            "amqp_user_prefix": f"mhbench-{run}-",
            "amqp_secrets_dir": folder,
            "db_prefix": f"mhbench_{run}_",
            "redis_prefix": f"mhbench:{run}:",
            "log_level": "WARNING",
            # the benches' staff are never checked in: they measure the clinic's work, the
            # attendance check's cost is measured on its own (README: Attendance)
            "attendance_required": False,
        }
    )
    identities = (*IDENTITIES, *BENCH_IDENTITIES)
    broker.provision(settings, folder, identities, node=broker_node)
    node = ["-n", broker_node] if broker_node else []
    try:
        yield settings
    finally:
        subprocess.run(
            ["rabbitmqctl", *node, "-q", "delete_vhost", vhost],
            capture_output=True,
            timeout=60,
        )
        broker.delete_users(settings, identities, node=broker_node)
        shutil.rmtree(folder, ignore_errors=True)
