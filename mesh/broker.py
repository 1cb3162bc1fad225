"""Broker identities: one RabbitMQ user per process kind, confined by broker permissions.

Every process connects as its own user (`<prefix><identity>`) and sets the AMQP
`user_id` property, which RabbitMQ checks against the connection's user; that is how a
receiver knows which service sent a message (DESIGN §3a). The permissions below, made
from `contracts/`, confine each user further:

- configure (declare, delete): only its own queues (`rpc.<service>…`, `events.<identity>…`,
  server-named exclusive queues) and the shared exchanges;
- read (consume, and bind from an exchange): only its own queues;
- write (publish): the default exchange (RPC; the receiver checks who may call what),
  the events and dead-letter exchanges, and its own queues (for binding them);
- topic permissions on `medihaven.events`: publish only the routing keys of the events it
  may publish, bind only to those it consumes (`contracts.common.CONSUMES`).

`python -m mesh.broker provision` (development mode, tests) creates the users, a vhost
and the permissions with one `rabbitmqctl import_definitions` on this machine, keeping each
identity's generated password in a file of the secrets folder; `--via http` does the same
through the management API of a remote broker (deploy/: compose's `broker-users` and the
Kubernetes Job), with an administrator's credentials from `MEDIHAVEN_BROKER_ADMIN_URL`,
`_USER`, `_PASSWORD`. `python -m mesh.broker passwords` only makes the password files (one
per identity, for a deployment's secrets); `python -m mesh.broker definitions` prints the
definitions document (passwords hashed) for RabbitMQ's `load_definitions`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from contracts.base import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    GATEWAY,
    OPERATOR,
    UNROUTED_EXCHANGE,
    UNROUTED_QUEUE,
)
from contracts.common import CONSUMES, IDENTITIES, SERVED_BY, collect
from mesh.settings import Settings, get_settings

HASHING = "rabbit_password_hashing_sha256"
OPEN = ".*"
EXCLUSIVE = (r"amq\.gen-.*", r"amq_[0-9a-f]{32}")
"""Names of exclusive queues (server-named, or named by aio-pika): a connection's own."""


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str
    dlx_write: str
    dlx_read: str


def _any_of(patterns: Iterable[str]) -> str:
    items = sorted(set(patterns))
    return "^(" + "|".join(items) + ")$" if items else "^$"


def _served(identity: str) -> list[str]:
    return [identity, *(queue for queue, owner in SERVED_BY.items() if owner == identity)]


def permissions(identity: str) -> Permissions:
    """What one identity of the mesh may do on the broker (made from `contracts/`)."""
    if identity not in IDENTITIES:
        # Test fixtures and benchmarks: their own users, unconfined on their own vhost.
        return Permissions(OPEN, OPEN, OPEN, OPEN, OPEN, OPEN, OPEN)
    rpc = [re.escape(f"rpc.{s}") + r"(\.dlq|@.+)?" for s in _served(identity)]
    broadcast = [re.escape(f"rpc.{s}.broadcast") for s in _served(identity)]
    groups = [re.escape(f"events.{identity}") + r"(-[a-z0-9-]+)?(\.dlq)?", *EXCLUSIVE]
    shared_exchanges = [re.escape(x) for x in (EVENTS_EXCHANGE, UNROUTED_EXCHANGE)]
    shared_exchanges.append(re.escape(DEAD_LETTER_EXCHANGE))
    unrouted = re.escape(UNROUTED_QUEUE)
    own = [*rpc, *groups]
    callers_of_broadcast = [r"rpc\.[a-z]+\.broadcast"] if identity in (GATEWAY, OPERATOR) else []
    _, events = collect()
    published = [re.escape(e.routing_key) for e in events if e.may_publish(identity)]
    consumed = [re.escape(e.routing_key) for e in CONSUMES.get(identity, ())]
    dead_letters = [re.escape(f"rpc.{s}.dlq") for s in _served(identity)]
    return Permissions(
        configure=_any_of([*own, *broadcast, *shared_exchanges, unrouted]),
        write=_any_of(
            [r"amq\.default", *own, *broadcast, *callers_of_broadcast, *shared_exchanges, unrouted]
        ),
        read=_any_of([*own, *broadcast, *shared_exchanges]),
        topic_write=_any_of(published),
        topic_read=_any_of(consumed),
        dlx_write=_any_of(dead_letters),
        dlx_read=_any_of([*dead_letters, re.escape(f"events.{identity}") + r".*\.dlq"]),
    )


def password_hash(password: str) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def passwords(folder: Path, identities: Sequence[str]) -> dict[str, str]:
    """Each identity's password from its file in `folder`, made (random, 0600) if missing."""
    if not folder.is_dir():
        folder.mkdir(parents=True)
        os.chmod(folder, 0o700)
    found: dict[str, str] = {}
    for identity in identities:
        path = folder / identity
        if not path.is_file():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        found[identity] = path.read_text().strip()
    return found


def definitions(
    settings: Settings, vhost: str, secrets_by_identity: dict[str, str]
) -> dict[str, Any]:
    """A RabbitMQ definitions document: the users, the vhost and every permission."""
    users, grants, topics = [], [], []
    for identity, password in sorted(secrets_by_identity.items()):
        user = settings.broker_user(identity)
        users.append(
            {
                "name": user,
                "password_hash": password_hash(password),
                "hashing_algorithm": HASHING,
                "tags": [],
            }
        )
        p = permissions(identity)
        grant = {"user": user, "vhost": vhost}
        grants.append({**grant, "configure": p.configure, "write": p.write, "read": p.read})
        topics.append(
            {**grant, "exchange": EVENTS_EXCHANGE, "write": p.topic_write, "read": p.topic_read}
        )
        topics.append(
            {**grant, "exchange": DEAD_LETTER_EXCHANGE, "write": p.dlx_write, "read": p.dlx_read}
        )
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": grants,
        "topic_permissions": topics,
    }


def vhost_of(settings: Settings) -> str:
    path = urlsplit(settings.amqp_url.get_secret_value()).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _ctl(node: str | None) -> list[str]:
    """`rabbitmqctl`, aimed at `node` (a node of a local cluster) or the machine's own."""
    return ["rabbitmqctl", "-q", *(["-n", node] if node else [])]


def import_definitions(
    document: dict[str, Any], *, timeout_s: float = 60, node: str | None = None
) -> None:
    """Load a definitions document into the local broker (`rabbitmqctl import_definitions`;
    `node`: one node of a local cluster, which shares it with the others)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(document, handle)
        path = handle.name
    try:
        os.chmod(path, 0o644)  # rabbitmqctl may read it as the rabbitmq user
        result = subprocess.run(  # noqa: S603 - fixed arguments, a file we wrote
            [*_ctl(node), "import_definitions", path],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    finally:
        os.unlink(path)
    if result.returncode != 0:
        raise RuntimeError(
            "rabbitmqctl import_definitions failed: " + (result.stderr or result.stdout).strip()
        )


def provision(
    settings: Settings,
    folder: Path,
    identities: Sequence[str] = IDENTITIES,
    *,
    node: str | None = None,
) -> dict[str, str]:
    """Create (or update) the broker users of `identities` on the settings' vhost."""
    found = passwords(folder, identities)
    import_definitions(definitions(settings, vhost_of(settings), found), node=node)
    return found


def import_via_http(
    document: dict[str, Any], admin_url: str, user: str, password: str, *, timeout_s: float = 30
) -> None:
    """Load a definitions document through the management API (`POST /api/definitions`)."""
    import httpx

    response = httpx.post(
        admin_url.rstrip("/") + "/api/definitions",
        json=document,
        auth=(user, password),
        timeout=timeout_s,
    )
    if response.status_code >= 300:
        raise RuntimeError(
            f"the broker refused the definitions ({response.status_code}): {response.text[:300]}"
        )


def provision_via_http(
    settings: Settings,
    folder: Path,
    admin_url: str,
    user: str,
    password: str,
    identities: Sequence[str] = IDENTITIES,
) -> dict[str, str]:
    """`provision`, through the management API (a broker without `rabbitmqctl` here)."""
    found = passwords(folder, identities)
    import_via_http(definitions(settings, vhost_of(settings), found), admin_url, user, password)
    return found


def delete_users(settings: Settings, identities: Sequence[str], *, node: str | None = None) -> None:
    """Remove the broker users (tests clean up after themselves), in parallel."""
    procs = [
        subprocess.Popen(  # noqa: S603 - fixed arguments, users named by the settings
            [*_ctl(node), "delete_user", settings.broker_user(i)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in identities
    ]
    for proc in procs:
        proc.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mesh.broker", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("command", choices=["provision", "passwords", "definitions"])
    parser.add_argument("--via", choices=["rabbitmqctl", "http"], default="rabbitmqctl")
    args = parser.parse_args(argv)
    settings = get_settings()
    folder = settings.secrets_dir()
    if folder is None:
        print("set MEDIHAVEN_AMQP_SECRETS_DIR (or MEDIHAVEN_DEV_MODE=true)", file=sys.stderr)
        return 2
    found = passwords(folder, IDENTITIES)
    if args.command == "passwords":
        print(f"one broker password per identity in {folder} (keep them secret)")
        return 0
    document = definitions(settings, vhost_of(settings), found)
    if args.command == "definitions":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.via == "http":
        env = os.environ
        try:
            admin = (env["MEDIHAVEN_BROKER_ADMIN_URL"], env["MEDIHAVEN_BROKER_ADMIN_USER"])
            import_via_http(document, *admin, env["MEDIHAVEN_BROKER_ADMIN_PASSWORD"])
        except KeyError as missing:
            print(f"set {missing.args[0]} (the broker's management API)", file=sys.stderr)
            return 2
    else:
        import_definitions(document)
    print(f"broker users {', '.join(settings.broker_user(i) for i in IDENTITIES)} are ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
