#!/usr/bin/env python3
"""Bring up RabbitMQ, MariaDB and Redis on this machine for development and CI; stop them.

`python3 mesh/servers.py up` makes every server the settings point at on this machine
(host 127.0.0.1, localhost or ::1) answer on its configured port:

1. a server that answers already is left alone;
2. one that is installed but not running is started here, detached from the terminal, and
   waited for until it accepts connections (its protocol's greeting, not only an open port);
3. one that is not installed runs from `deploy/compose.dev.yaml` when a Docker engine
   answers: the engines only (the services still run as local processes), published on
   127.0.0.1 at the configured ports, data in named volumes. That RabbitMQ must let guest
   in from the host (`loopback_users`, deploy/dev/rabbitmq.conf): there is no rabbitmqctl
   here, so the preflight makes the mesh's broker users as guest over the management API
   (`mesh.broker.provision_via_http`), which this waits for as well;
4. otherwise it says, for this operating system family (Debian/Ubuntu, Fedora, macOS with
   Homebrew), the commands that install them.

It is the one place that knows how to start them: `.ci/run` calls it before the virtualenv
exists (so: the standard library only), `make run` through `mesh.preflight` in development
mode. What it starts it remembers in `var/servers/state.json` (git-ignored);
`python3 mesh/servers.py down` (`make stop-servers`) stops exactly those and never a server
it did not start: a process is signalled only while its pid still runs the program started
then (same program, same start time), a container only if it belongs to the compose project.

Addresses come from the variables `mesh/settings.py` reads, with its defaults:
`MEDIHAVEN_AMQP_URL`, `MEDIHAVEN_DB_HOST`, `_DB_PORT`, `_DB_PASSWORD`, `MEDIHAVEN_REDIS_URL`,
and `MEDIHAVEN_BROKER_ADMIN_URL` (the management API the Docker broker publishes, port 15672
unless it names another). `MEDIHAVEN_SERVERS_DIR` moves the state, logs and Redis folder
(default `var/servers`); `MEDIHAVEN_SERVERS_EXTRA_PATH` lists the folders searched for the
servers' programs after `PATH` (default: the sbin, libexec and Homebrew folders, where
packages put them outside a user's `PATH`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "deploy" / "compose.dev.yaml"
COMPOSE_PROJECT = "medihaven-dev"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
EXTRA_PATH = (
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/usr/libexec",  # Fedora's mariadbd
    "/opt/homebrew/sbin",  # Homebrew on Apple silicon (rabbitmq-server)
    "/opt/homebrew/bin",
    "/usr/local/bin",
)

# The defaults of mesh/settings.py (tests/test_servers.py checks they agree).
DEFAULT_AMQP_URL = "amqp://127.0.0.1:5672/"
DEFAULT_DB_HOST = "127.0.0.1"
DEFAULT_DB_PORT = 3306
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_ADMIN_PORT = 15672

LOCAL_TIMEOUT_S = 60.0
DOCKER_TIMEOUT_S = 180.0  # a first run initialises MariaDB's and RabbitMQ's volumes
STOP_TIMEOUT_S = 60.0
POLL_S = 0.1

FAMILIES = {"debian": "Debian/Ubuntu", "fedora": "Fedora", "macos": "macOS with Homebrew"}


@dataclass(frozen=True)
class Engine:
    key: str
    """Also its service in deploy/compose.dev.yaml."""
    name: str
    programs: tuple[str, ...]
    """The server programs; any one of them found means it is installed."""
    packages: Mapping[str, str]
    """Per operating system family: the package that installs it."""
    units: Mapping[str, str]
    """Per family: its system service (systemd unit, Homebrew formula)."""


ENGINES = {
    "rabbitmq": Engine(
        "rabbitmq",
        "RabbitMQ",
        ("rabbitmq-server",),
        {"debian": "rabbitmq-server", "fedora": "rabbitmq-server", "macos": "rabbitmq"},
        {"debian": "rabbitmq-server", "fedora": "rabbitmq-server", "macos": "rabbitmq"},
    ),
    "mariadb": Engine(
        "mariadb",
        "MariaDB",
        ("mariadbd", "mysqld"),
        {"debian": "mariadb-server", "fedora": "mariadb-server", "macos": "mariadb"},
        {"debian": "mariadb", "fedora": "mariadb", "macos": "mariadb"},
    ),
    "redis": Engine(
        "redis",
        "Redis",
        ("redis-server", "valkey-server"),  # Fedora 41+ ships Valkey in Redis's place
        {"debian": "redis-server", "fedora": "valkey", "macos": "redis"},
        {"debian": "redis-server", "fedora": "valkey", "macos": "redis"},
    ),
}
ORDER = tuple(ENGINES)


@dataclass(frozen=True)
class Target:
    """One server the settings point at."""

    key: str
    host: str
    port: int
    admin_port: int = DEFAULT_ADMIN_PORT
    """RabbitMQ only: its management API (the Docker broker publishes it there)."""
    password: str = ""
    """MariaDB only: root's password (the Docker database is made with it)."""

    @property
    def engine(self) -> Engine:
        return ENGINES[self.key]

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def targets(
    *,
    amqp_url: str = DEFAULT_AMQP_URL,
    db_host: str = DEFAULT_DB_HOST,
    db_port: int = DEFAULT_DB_PORT,
    db_password: str = "",
    redis_url: str = DEFAULT_REDIS_URL,
    admin_url: str | None = None,
) -> list[Target]:
    """The three servers, as the settings name them (a TLS or socket URL is not ours to
    start: it is left out)."""
    found: list[Target] = []
    amqp = urlsplit(amqp_url)
    admin = urlsplit(admin_url).port if admin_url else None
    if amqp.scheme == "amqp":
        host = amqp.hostname or "127.0.0.1"
        found.append(Target("rabbitmq", host, amqp.port or 5672, admin or DEFAULT_ADMIN_PORT))
    found.append(Target("mariadb", db_host, db_port, password=db_password))
    redis = urlsplit(redis_url)
    if redis.scheme == "redis":
        found.append(Target("redis", redis.hostname or "127.0.0.1", redis.port or 6379))
    return found


def targets_from_env(env: Mapping[str, str] = os.environ) -> list[Target]:
    return targets(
        amqp_url=env.get("MEDIHAVEN_AMQP_URL") or DEFAULT_AMQP_URL,
        db_host=env.get("MEDIHAVEN_DB_HOST") or DEFAULT_DB_HOST,
        db_port=int(env.get("MEDIHAVEN_DB_PORT") or DEFAULT_DB_PORT),
        db_password=env.get("MEDIHAVEN_DB_PASSWORD", ""),
        redis_url=env.get("MEDIHAVEN_REDIS_URL") or DEFAULT_REDIS_URL,
        admin_url=env.get("MEDIHAVEN_BROKER_ADMIN_URL"),
    )


# --- does it answer? -----------------------------------------------------------------------

ANSWERS, SILENT, CLOSED = "answers", "silent", "closed"
"""The server greets; something accepts connections but does not greet; nothing listens."""

_GREETING: dict[str, tuple[bytes, int, Callable[[bytes], bool]]] = {
    # PONG, or an error that is not "still loading" (NOAUTH: it answers, the settings are off)
    "redis": (b"PING\r\n", 5, lambda d: d.startswith((b"+PONG", b"-")) and d != b"-LOAD"),
    # the protocol header; a broker answers with Connection.Start (a method frame, type 1)
    "rabbitmq": (b"AMQP\x00\x00\x09\x01", 1, lambda d: d == b"\x01"),
    # the server speaks first: a handshake (protocol 10), or an error packet (0xff)
    "mariadb": (b"", 5, lambda d: len(d) == 5 and d[4] in (0x0A, 0xFF)),
}


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe(target: Target, timeout: float = 2.0) -> str:
    """ANSWERS, SILENT or CLOSED (one connection, closed again at once)."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError:
        return CLOSED
    hello, count, greets = _GREETING[target.key]
    with sock:
        try:
            if hello:
                sock.sendall(hello)
            return ANSWERS if greets(_read(sock, count)) else SILENT
        except OSError:
            return SILENT


def _http_answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/api/overview")
        connection.getresponse().read()  # any answer (401 without credentials) is the API
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _poll(condition: Callable[[], bool], deadline: float) -> bool:
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def wait_until_answers(
    target: Target, deadline: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    """True once the server greets; False at the deadline or when `alive()` turns false."""
    while True:
        if probe(target) == ANSWERS:
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


# --- programs, processes, operating systems ---------------------------------------------------


def extra_path() -> list[str]:
    """The folders searched after PATH (MEDIHAVEN_SERVERS_EXTRA_PATH, default EXTRA_PATH)."""
    configured = os.environ.get("MEDIHAVEN_SERVERS_EXTRA_PATH")
    folders = configured.split(os.pathsep) if configured is not None else list(EXTRA_PATH)
    return [folder for folder in folders if folder]


def search_path() -> list[str]:
    return [f for f in os.environ.get("PATH", "").split(os.pathsep) if f] + extra_path()


def find_program(names: Sequence[str]) -> str | None:
    path = os.pathsep.join(search_path())
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def _ps(pid: int, column: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            ["ps", "-p", str(pid), "-o", f"{column}="],  # noqa: S607 - ps from PATH
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (Linux), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    stat = _proc_stat(pid)
    state = stat[0] if stat else _ps(pid, "stat")
    return not (state or "").startswith("Z")


def _start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot on Linux), to tell it from a later
    process with the same pid."""
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[19] if len(stat) > 19 else None
    return _ps(pid, "lstart")


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return _ps(pid, "command") or ""


def os_family(system: str | None = None, os_release: str | None = None) -> str:
    """The operating system family: debian, fedora, macos, or unknown."""
    if (system or platform.system()) == "Darwin":
        return "macos"
    if os_release is None:
        try:
            os_release = Path("/etc/os-release").read_text()
        except OSError:
            os_release = ""
    words: set[str] = set()
    for line in os_release.splitlines():
        name, _, value = line.partition("=")
        if name in ("ID", "ID_LIKE"):
            words.update(value.strip().strip("\"'").lower().split())
    if words & {"debian", "ubuntu"}:
        return "debian"
    if words & {"fedora", "rhel", "centos"}:
        return "fedora"
    return "unknown"


def install_commands(family: str, keys: Sequence[str]) -> list[str]:
    """The commands that install the engines `keys` on this family (and start them where
    `make run` could not: Fedora's packages install system services, started as root)."""
    packages = " ".join(ENGINES[k].packages[family] for k in keys)
    units = " ".join(ENGINES[k].units[family] for k in keys)
    if family == "debian":  # their packages start the services
        return ["sudo apt-get update", f"sudo apt-get install -y {packages}"]
    if family == "fedora":
        return [f"sudo dnf install -y {packages}", f"sudo systemctl enable --now {units}"]
    return [f"brew install {packages}"]  # `make run` then starts them as this user


def install_advice(keys: Sequence[str], family: str, docker_why: str) -> list[str]:
    names = ", ".join(ENGINES[k].name for k in keys)
    families = [family] if family in FAMILIES else list(FAMILIES)
    lines = [f"{docker_why}. To install {names}:"]
    for each in families:
        lines.append(f"  on {FAMILIES[each]}:")
        lines += [f"      {command}" for command in install_commands(each, keys)]
    lines.append(
        "then run `make run` again (it starts an installed server that is not running), or "
        "install Docker and `make run` runs them from deploy/compose.dev.yaml."
    )
    return lines


def _start_hint(key: str, family: str) -> str:
    unit = ENGINES[key].units
    if family == "macos":
        return f"brew services start {unit['macos']}"
    if family in ("debian", "fedora"):
        return f"sudo systemctl start {unit[family]}"
    return f"sudo systemctl start {unit['debian']} (Linux), brew services start {unit['macos']}"


# --- what Medihaven started -----------------------------------------------------------------


def servers_dir() -> Path:
    configured = os.environ.get("MEDIHAVEN_SERVERS_DIR")
    return Path(configured) if configured else ROOT / "var" / "servers"


class State:
    """`state.json` in the servers folder, read and written under an exclusive lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.started: list[dict[str, Any]] = []

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except ValueError:
            print(f"warning: {self.path} is unreadable; starting a new one", file=sys.stderr)
            data = {}
        self.started = list(data.get("started", []))

    def save(self) -> None:
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"started": self.started}, indent=2) + "\n")
        os.replace(scratch, self.path)

    def find(self, target: Target) -> dict[str, Any] | None:
        for entry in self.started:
            if entry["key"] == target.key and entry["port"] == target.port:
                return entry
        return None

    def add(self, entry: dict[str, Any]) -> None:
        self.started = [
            e for e in self.started if (e["key"], e["port"]) != (entry["key"], entry["port"])
        ]
        self.started.append(entry)
        self.save()


@contextlib.contextmanager
def locked_state() -> Iterator[State]:
    folder = servers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = State(folder)
        state.load()
        try:
            yield state
        finally:
            state.save()


def _same_process(entry: Mapping[str, Any]) -> bool:
    """The recorded pid still runs what Medihaven started (not a later process)."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or not _running(pid):
        return False
    if entry.get("start_time") and _start_time(pid) != entry["start_time"]:
        return False
    return str(entry.get("marker", "")) in _command_line(pid)


# --- starting -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What `up` could not do (per engine name), and how to install what is missing."""

    problems: dict[str, str] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n        | {line}" for line in text)


def _start_command(target: Target, program: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    """How CI and `make run` start a server that is installed (the one copy of it)."""
    env = dict(os.environ)
    bind = "::1" if target.host == "::1" else "127.0.0.1"
    if target.key == "redis":
        data = folder / f"redis-{target.port}"
        data.mkdir(exist_ok=True)
        argv = [program, "--port", str(target.port), "--bind", bind, "--daemonize", "no"]
        return [*argv, "--save", "", "--appendonly", "no", "--dir", str(data)], env
    if target.key == "mariadb":
        return [program, f"--port={target.port}", f"--bind-address={bind}"], env
    if target.port != 5672:
        env["RABBITMQ_NODE_PORT"] = str(target.port)
    return [program, "-detached"], env


def _rabbitmq_pid(deadline: float) -> int | None:
    """The running broker's OS pid, once it has booted (rabbitmqctl), or None."""
    ctl = find_program(("rabbitmqctl",))
    if ctl is None:
        return None
    try:
        remaining = max(1.0, deadline - time.monotonic())
        subprocess.run(  # noqa: S603 - fixed arguments
            [ctl, "-q", "await_startup"], capture_output=True, timeout=remaining
        )
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [ctl, "-q", "eval", "os:getpid()."], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    digits = result.stdout.strip().strip('"')
    return int(digits) if result.returncode == 0 and digits.isdigit() else None


def start_local(
    target: Target, program: str, folder: Path, timeout: float, say: Callable[[str], None]
) -> dict[str, Any] | str:
    """Start an installed server; its state entry, or why it did not come up."""
    name = target.engine.name
    log = folder / f"{target.key}-{target.port}.log"
    argv, env = _start_command(target, program, folder)
    say(f"{name} does not answer on {target.address}: starting it ({shlex.join(argv)})")
    deadline = time.monotonic() + timeout
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - a server program found on this machine
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # not stopped by Ctrl-C in `make run`'s terminal
        )
    pid: int | None = process.pid
    exited: int | None = None
    if target.key == "rabbitmq":  # `-detached` returns once the node is on its way
        try:
            exited = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            exited = None
        up = exited == 0 and wait_until_answers(target, deadline)
        pid = _rabbitmq_pid(deadline) if up else None
    else:
        up = wait_until_answers(target, deadline, alive=lambda: process.poll() is None)
        exited = process.poll()
    if not up:
        if exited is None and target.key != "rabbitmq":
            process.terminate()  # ours, but it never answered: do not leave it behind
        status = f"; it exited with status {exited}" if exited else ""
        return (
            f"{name} is installed ({program}) but did not answer on {target.address} within "
            f"{timeout:.0f} s{status}. Its output ({log}):{_tail(log)}\n"
            f"    If it runs as a system service here, start it with: "
            f"{_start_hint(target.key, os_family())}"
        )
    return {
        "key": target.key,
        "name": name,
        "host": target.host,
        "port": target.port,
        "how": "process",
        "program": program,
        "pid": pid,
        "start_time": _start_time(pid) if pid else None,
        "marker": "rabbitmq" if target.key == "rabbitmq" else Path(program).name,
        "log": str(log),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def docker_engine() -> tuple[str | None, str]:
    """(the docker program, "") when a Docker engine with Compose answers, else (None, why)."""
    docker = find_program(("docker",))
    if docker is None:
        return None, "Docker is not installed either"
    try:
        info = subprocess.run(  # noqa: S603 - fixed arguments
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if info.returncode != 0:
            reason = (info.stderr.strip().splitlines() or ["no reason given"])[-1]
            return None, f"Docker is installed but its engine does not answer ({reason})"
        compose = subprocess.run(  # noqa: S603 - fixed arguments
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"Docker does not answer ({exc})"
    if compose.returncode != 0:
        return None, "Docker answers but has no Compose (`docker compose`)"
    return docker, ""


def compose_command(docker: str, *args: str) -> list[str]:
    return [docker, "compose", "-f", str(COMPOSE_FILE), "-p", COMPOSE_PROJECT, *args]


def compose_env(wanted: Sequence[Target]) -> dict[str, str]:
    """The variables deploy/compose.dev.yaml publishes its ports (and root's password) with."""
    env = dict(os.environ)
    for target in wanted:
        if target.key == "rabbitmq":
            env["MEDIHAVEN_DEV_AMQP_PORT"] = str(target.port)
            env["MEDIHAVEN_DEV_AMQP_ADMIN_PORT"] = str(target.admin_port)
        elif target.key == "mariadb":
            env["MEDIHAVEN_DEV_DB_PORT"] = str(target.port)
            env["MEDIHAVEN_DEV_DB_PASSWORD"] = target.password
        else:
            env["MEDIHAVEN_DEV_REDIS_PORT"] = str(target.port)
    return env


def start_with_docker(
    wanted: Sequence[Target],
    state: State,
    outcome: Outcome,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    keys = [t.key for t in wanted]
    docker, why = docker_engine()
    if docker is None:
        for target in wanted:
            programs = " or ".join(target.engine.programs)
            where = ", ".join(["PATH", *extra_path()])
            outcome.problems[target.engine.name] = (
                f"{target.engine.name} does not answer on {target.address} and is not "
                f"installed here (no {programs} in {where})."
            )
        outcome.advice = install_advice(keys, os_family(), why)
        return
    names = ", ".join(t.engine.name for t in wanted)
    say(
        f"{names}: not installed here; starting with Docker ({COMPOSE_FILE.relative_to(ROOT)}, "
        "the engines only; the first run downloads the images)"
    )
    command = compose_command(docker, "up", "-d", *keys)
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            command, env=compose_env(wanted), stdin=subprocess.DEVNULL, timeout=1800
        )
        failed = f"status {result.returncode}" if result.returncode else ""
    except (OSError, subprocess.SubprocessError) as exc:
        failed = str(exc)
    for target in wanted:  # recorded even if it failed: `down` removes what it made
        state.add(
            {
                "key": target.key,
                "name": target.engine.name,
                "host": target.host,
                "port": target.port,
                "how": "docker",
                "service": target.key,
                "project": COMPOSE_PROJECT,
                "compose_file": str(COMPOSE_FILE),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
    if failed:
        for target in wanted:
            outcome.problems[target.engine.name] = (
                f"`{shlex.join(command)}` failed ({failed}; its output is above)"
            )
        return
    deadline = time.monotonic() + timeout
    for target in wanted:
        up = wait_until_answers(target, deadline)
        if up and target.key == "rabbitmq":  # the broker users are made over this API
            up = _poll(functools.partial(_http_answers, target.host, target.admin_port), deadline)
        if not up:
            logs = shlex.join(compose_command("docker", "logs", target.key))
            outcome.problems[target.engine.name] = (
                f"{target.engine.name} (Docker) did not answer on {target.address} within "
                f"{timeout:.0f} s; `{logs}` shows why"
            )
            continue
        outcome.started.append(target.key)
        kept = "nothing kept" if target.key == "redis" else f"data in volume {target.key}"
        say(
            f"Medihaven started {target.engine.name} with Docker on {target.address} "
            f"(service {target.key} of project {COMPOSE_PROJECT}, {kept}); "
            "`make stop-servers` stops it"
        )


def up(
    wanted: Sequence[Target],
    *,
    timeout: float = LOCAL_TIMEOUT_S,
    docker_timeout: float = DOCKER_TIMEOUT_S,
    say: Callable[[str], None] = print,
) -> Outcome:
    """Make every local server of `wanted` answer, or say why it cannot."""
    outcome = Outcome()
    with locked_state() as state:
        for_docker: list[Target] = []
        for target in wanted:
            if not target.local:
                continue  # another machine's: the preflight checks it, nobody starts it
            name = target.engine.name
            status = probe(target)
            if status == SILENT:  # a server still starting, or another program on its port
                if wait_until_answers(target, time.monotonic() + timeout):
                    status = ANSWERS
                else:
                    outcome.problems[name] = (
                        f"something accepts connections on {target.address} but does not "
                        f"answer as {name} (another program on its port?)"
                    )
                    continue
            if status == ANSWERS:
                entry = state.find(target)
                if entry and (entry["how"] == "docker" or _same_process(entry)):
                    say(
                        f"{name} on {target.address}: started by Medihaven earlier "
                        "(`make stop-servers` stops it)"
                    )
                continue
            program = find_program(target.engine.programs)
            if program is None:
                for_docker.append(target)
                continue
            started = start_local(target, program, state.folder, timeout, say)
            if isinstance(started, str):
                outcome.problems[name] = started
                continue
            state.add(started)
            outcome.started.append(target.key)
            say(
                f"Medihaven started {name} on {target.address} ({program}, output in "
                f"{started['log']}); `make stop-servers` stops it"
            )
        if for_docker:
            start_with_docker(for_docker, state, outcome, docker_timeout, say)
    return outcome


# --- stopping -------------------------------------------------------------------------------


def _stop_process(entry: Mapping[str, Any], say: Callable[[str], None]) -> bool:
    """Stop a server Medihaven started as a process; False if it is still running."""
    where = f"{entry['name']} on {entry['host']}:{entry['port']}"
    pid = entry.get("pid")
    if not isinstance(pid, int):
        say(f"{where}: Medihaven started it but never learnt its pid; left alone")
        return True
    if not _same_process(entry):
        say(f"{where}: the process Medihaven started (pid {pid}) is gone; nothing stopped")
        return True
    try:
        os.kill(pid, signal.SIGTERM)  # each of the three shuts down cleanly on SIGTERM
    except ProcessLookupError:
        return True
    except PermissionError:
        say(f"{where}: not allowed to stop pid {pid} (started by another user?)")
        return False
    if not _poll(lambda: not _running(pid), time.monotonic() + STOP_TIMEOUT_S):
        say(f"{where}: pid {pid} did not stop within {STOP_TIMEOUT_S:.0f} s")
        return False
    say(f"Stopped {where} (pid {pid}), which Medihaven had started")
    return True


def _stop_containers(entries: Sequence[Mapping[str, Any]], say: Callable[[str], None]) -> bool:
    docker = find_program(("docker",))
    services = [str(e["service"]) for e in entries]
    if docker is None:
        say(f"cannot stop the Docker services {', '.join(services)}: docker is missing")
        return False
    command = compose_command(docker, "rm", "--stop", "--force", *services)
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            command, stdin=subprocess.DEVNULL, timeout=300
        )
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"`{shlex.join(command)}` failed: {exc}")
        return False
    if result.returncode != 0:
        say(f"`{shlex.join(command)}` failed (status {result.returncode})")
        return False
    for entry in entries:
        say(
            f"Stopped {entry['name']} on {entry['host']}:{entry['port']} (Docker service "
            f"{entry['service']}; its volume stays), which Medihaven had started"
        )
    return True


def down(say: Callable[[str], None] = print) -> int:
    """Stop what `up` started, and only that; 0 when nothing it started is left running."""
    with locked_state() as state:
        if not state.started:
            say("No server started by Medihaven is recorded: nothing to stop.")
            return 0
        left: list[dict[str, Any]] = []
        containers = [e for e in state.started if e["how"] == "docker"]
        for entry in state.started:
            if entry["how"] == "process" and not _stop_process(entry, say):
                left.append(entry)
        if containers and not _stop_containers(containers, say):
            left += containers
        state.started = left
    return 1 if left else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 mesh/servers.py",
        description="Start RabbitMQ, MariaDB and Redis here when they are not running "
        "(up), or stop the ones this started (down). See the module's docstring.",
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument(
        "--only", action="append", choices=ORDER, help="only this server (repeatable)"
    )
    parser.add_argument(
        "--timeout", type=float, default=LOCAL_TIMEOUT_S, help="seconds to wait for each"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            return down()
        wanted = [t for t in targets_from_env() if not args.only or t.key in args.only]
        outcome = up(wanted, timeout=args.timeout, docker_timeout=max(args.timeout, 180))
    except Exception as exc:  # a readable line, never a stack trace
        print(f"mesh/servers.py {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if outcome.ok:
        return 0
    print("\nNot every server answers:", file=sys.stderr)
    for problem in outcome.problems.values():
        print(f"  - {problem}", file=sys.stderr)
    for line in outcome.advice:
        print(line, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
