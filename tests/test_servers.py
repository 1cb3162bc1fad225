"""mesh/servers.py: how `make run` (through the preflight) and `.ci/run` bring up RabbitMQ,
MariaDB and Redis, and how `make stop-servers` stops only what they started.

Against real processes, never the shared servers: every server started or stopped here is
a private Redis on a free port, the state is in a temporary folder, and the Docker engine
is a fake `docker` on PATH that records its arguments (and runs a real Redis for the
compose service, as a container would publish it)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
import yaml
from pydantic import SecretStr

from contracts.common import IDENTITIES
from mesh import broker, preflight, servers
from mesh.settings import Settings
from tests.conftest import USER_PREFIX
from tests.processes import free_port, process_env
from tests.test_deploy import interpolate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "mesh" / "servers.py"
REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until `condition()` holds; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(0.05)


def ping(port: int) -> bool:
    """A Redis answers on 127.0.0.1:port (redis-py, not the code under test)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def users_redis(port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis the user started themselves (not Medihaven)."""
    assert REDIS_SERVER is not None
    settings = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), *settings],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait(lambda: ping(port))
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def recorded(folder: Path) -> list[dict[str, Any]]:
    path = folder / "state.json"
    started = json.loads(path.read_text())["started"] if path.exists() else []
    assert isinstance(started, list)
    return started


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """The servers folder of one test; whatever is still running from it is stopped after."""
    folder = tmp_path / "servers"
    yield folder
    pids = [e["pid"] for e in recorded(folder) if isinstance(e.get("pid"), int)]
    pids += [int(p.read_text()) for p in tmp_path.glob("*.redis.pid")]
    for pid in pids:
        if servers._running(pid) and "redis" in servers._command_line(pid):
            os.kill(pid, signal.SIGTERM)


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def hidden_path_env(tmp_path: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    """No server program (nor docker, unless the test puts one in bin/) to be found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIHAVEN_")}
    env.update(
        PATH=str(bin_dir),
        MEDIHAVEN_SERVERS_EXTRA_PATH="",
        MEDIHAVEN_SERVERS_DIR=str(state_dir),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


FAKE_DOCKER = """\
#!{python}
# A Docker CLI for tests: records its arguments; `compose up redis` runs a real Redis on
# the published port (as the container would), `compose rm redis` stops it.
import json, os, signal, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
log = Path(os.environ["FAKE_DOCKER_LOG"])
published = {{k: v for k, v in os.environ.items() if k.startswith("MEDIHAVEN_DEV_")}}
with log.open("a") as out:
    out.write(json.dumps({{"argv": args, "env": published}}) + "\\n")
if args[:1] == ["info"]:
    if os.environ.get("FAKE_DOCKER_ENGINE") == "down":
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
              "Is the docker daemon running?", file=sys.stderr)
        sys.exit(1)
    print("27.3.1")
elif args[:2] == ["compose", "version"]:
    print("Docker Compose version v2.29.7")
elif "up" in args and "redis" in args:
    redis = subprocess.Popen(
        [{redis!r}, "--port", published["MEDIHAVEN_DEV_REDIS_PORT"], "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(log.parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log.with_suffix(".redis.pid").write_text(str(redis.pid))
elif "rm" in args and "redis" in args:
    os.kill(int(log.with_suffix(".redis.pid").read_text()), signal.SIGTERM)
"""


def fake_docker(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "docker"
    path.parent.mkdir(exist_ok=True)
    path.write_text(FAKE_DOCKER.format(python=sys.executable, redis=REDIS_SERVER))
    path.chmod(0o755)
    return tmp_path / "docker.jsonl"


def docker_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# --- installed but not running: started, and stopped again --------------------------------


@needs_redis
def test_the_preflight_starts_a_redis_that_is_not_running_and_down_stops_only_that(
    tmp_path: Path, state_dir: Path, settings: Settings
) -> None:
    mine, theirs = free_port(), free_port()
    assert not ping(mine)
    prefix = f"{USER_PREFIX}srv-"
    env = process_env(
        settings,
        MEDIHAVEN_DEV_MODE="true",
        MEDIHAVEN_SERVERS_DIR=str(state_dir),
        MEDIHAVEN_REDIS_URL=f"redis://127.0.0.1:{mine}/0",
        MEDIHAVEN_AMQP_USER_PREFIX=prefix,
        MEDIHAVEN_AMQP_SECRETS_DIR=str(tmp_path / "amqp"),
        MEDIHAVEN_DB_PREFIX=f"{settings.db_prefix}servers_",  # dropped with the session's
    )
    try:
        with users_redis(theirs, tmp_path) as user_started:
            result = subprocess.run(
                [sys.executable, "-m", "mesh.preflight"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"Medihaven started Redis on 127.0.0.1:{mine}" in result.stdout
            assert "RabbitMQ, MariaDB and Redis answer" in result.stdout
            assert "Traceback" not in result.stderr
            assert ping(mine)
            [entry] = recorded(state_dir)
            assert (entry["key"], entry["port"], entry["how"]) == ("redis", mine, "process")

            # Asked again, it knows it started that one; the user's own is not recorded.
            again = run_script(env, "up")
            assert again.returncode == 0, again.stderr
            assert f"Redis on 127.0.0.1:{mine}: started by Medihaven earlier" in again.stdout
            theirs_env = {**env, "MEDIHAVEN_REDIS_URL": f"redis://127.0.0.1:{theirs}/0"}
            left_alone = run_script(theirs_env, "up", "--only", "redis")
            assert left_alone.returncode == 0, left_alone.stderr
            assert "Redis" not in left_alone.stdout  # answers: nothing to do, nothing said
            assert [e["port"] for e in recorded(state_dir)] == [mine]

            stopped = run_script(env, "down")
            assert stopped.returncode == 0, stopped.stderr
            assert f"Stopped Redis on 127.0.0.1:{mine}" in stopped.stdout
            wait(lambda: not ping(mine))
            assert ping(theirs) and user_started.poll() is None
            assert recorded(state_dir) == []
            assert "nothing to stop" in run_script(env, "down").stdout
    finally:
        broker.delete_users(settings.model_copy(update={"amqp_user_prefix": prefix}), IDENTITIES)


@needs_redis
def test_down_leaves_alone_a_server_the_user_started_where_one_of_medihaven_had_run(
    tmp_path: Path, state_dir: Path
) -> None:
    port = free_port()
    env = hidden_path_env(tmp_path, state_dir, MEDIHAVEN_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    env["PATH"] = os.environ["PATH"]  # redis-server is installed
    started = run_script(env, "up", "--only", "redis")
    assert started.returncode == 0, started.stderr
    assert f"Medihaven started Redis on 127.0.0.1:{port}" in started.stdout
    [entry] = recorded(state_dir)
    os.kill(entry["pid"], signal.SIGTERM)  # it went away (a crash, a reboot, by hand)
    wait(lambda: not ping(port))
    with users_redis(port, tmp_path) as user_started:  # the user's own, on the same port
        result = run_script(env, "down")
        assert result.returncode == 0, result.stderr
        assert f"pid {entry['pid']}) is gone; nothing stopped" in result.stdout
        assert ping(port) and user_started.poll() is None
    assert recorded(state_dir) == []


# --- not installed -------------------------------------------------------------------------


@pytest.mark.parametrize(("runner", "docker"), [("preflight", "absent"), ("script", "down")])
def test_without_the_servers_and_without_docker_it_names_the_install_commands(
    tmp_path: Path, state_dir: Path, runner: str, docker: str
) -> None:
    env = hidden_path_env(
        tmp_path,
        state_dir,
        MEDIHAVEN_DEV_MODE="true",
        MEDIHAVEN_AMQP_URL=f"amqp://127.0.0.1:{free_port()}/",
        MEDIHAVEN_DB_PORT=str(free_port()),
        MEDIHAVEN_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        FAKE_DOCKER_ENGINE="down",
        FAKE_DOCKER_LOG=str(tmp_path / "docker.jsonl"),
    )
    if docker == "down":
        fake_docker(tmp_path)
    command = [sys.executable, "-m", "mesh.preflight"] if runner == "preflight" else None
    result = (
        subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if command
        else run_script(env, "up")
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    for name in ("RabbitMQ", "MariaDB", "Redis"):
        assert f"{name} does not answer" in result.stderr
        assert "is not installed here" in result.stderr
    if docker == "down":
        assert "Docker is installed but its engine does not answer" in result.stderr
        assert "Cannot connect to the Docker daemon" in result.stderr
    else:
        assert "Docker is not installed either" in result.stderr
    family = servers.os_family()
    keys = list(servers.ENGINES)
    families = [family] if family in servers.FAMILIES else list(servers.FAMILIES)
    for each in families:
        assert f"on {servers.FAMILIES[each]}:" in result.stderr
        for line in servers.install_commands(each, keys):
            assert line in result.stderr
    if family == "debian":  # this machine: the exact command
        assert "sudo apt-get install -y rabbitmq-server mariadb-server redis-server" in (
            result.stderr
        )
    assert recorded(state_dir) == []


@pytest.mark.parametrize(
    ("system", "os_release", "family"),
    [
        ("Linux", 'ID=debian\nVERSION_ID="12"\n', "debian"),
        ("Linux", "ID=ubuntu\nID_LIKE=debian\n", "debian"),
        ("Linux", "ID=fedora\nVERSION_ID=41\n", "fedora"),
        ("Linux", 'ID="rocky"\nID_LIKE="rhel centos fedora"\n', "fedora"),
        ("Darwin", "", "macos"),
        ("Linux", "ID=arch\n", "unknown"),
    ],
)
def test_the_install_commands_follow_the_operating_system_family(
    system: str, os_release: str, family: str
) -> None:
    assert servers.os_family(system, os_release) == family
    advice = "\n".join(servers.install_advice(["redis"], family, "Docker is not installed"))
    expected = {
        "debian": ["sudo apt-get install -y redis-server"],
        "fedora": ["sudo dnf install -y valkey", "sudo systemctl enable --now valkey"],
        "macos": ["brew install redis"],
        "unknown": ["sudo apt-get install -y redis-server", "brew install redis"],
    }[family]
    for command in expected:
        assert command in advice
    assert ("brew install" in advice) == (family in ("macos", "unknown"))


# --- with Docker ---------------------------------------------------------------------------


@needs_redis
def test_with_docker_a_missing_server_runs_from_the_compose_file_and_down_removes_it(
    tmp_path: Path, state_dir: Path
) -> None:
    port = free_port()
    log = fake_docker(tmp_path)
    env = hidden_path_env(
        tmp_path,
        state_dir,
        MEDIHAVEN_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        FAKE_DOCKER_LOG=str(log),
    )
    result = run_script(env, "up", "--only", "redis")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Medihaven started Redis with Docker on 127.0.0.1:{port}" in result.stdout
    assert ping(port)
    compose = ["compose", "-f", str(ROOT / "deploy" / "compose.dev.yaml"), "-p", "medihaven-dev"]
    [up] = [c for c in docker_calls(log) if "up" in c["argv"]]
    assert up["argv"] == [*compose, "up", "-d", "redis"]
    assert up["env"]["MEDIHAVEN_DEV_REDIS_PORT"] == str(port)
    [entry] = recorded(state_dir)
    assert (entry["how"], entry["service"], entry["port"]) == ("docker", "redis", port)

    result = run_script(env, "down")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Stopped Redis on 127.0.0.1:{port} (Docker service redis" in result.stdout
    assert docker_calls(log)[-1]["argv"] == [*compose, "rm", "--stop", "--force", "redis"]
    wait(lambda: not ping(port))
    assert recorded(state_dir) == []


def test_the_compose_file_runs_the_three_engines_only_on_the_hosts_loopback() -> None:
    wanted = servers.targets(
        amqp_url="amqp://127.0.0.1:5673/",
        db_port=3307,
        db_password="secret",
        redis_url="redis://localhost:6380/0",
        admin_url="http://127.0.0.1:15673",
    )
    env = servers.compose_env(wanted)
    names = ("AMQP_PORT", "AMQP_ADMIN_PORT", "DB_PORT", "DB_PASSWORD", "REDIS_PORT")
    variables = {f"MEDIHAVEN_DEV_{n}": env[f"MEDIHAVEN_DEV_{n}"] for n in names}
    text = servers.COMPOSE_FILE.read_text()
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        data = yaml.safe_load(interpolate(text))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    data.pop("name")  # newer than the schema's revision
    jsonschema.Draft201909Validator(schema).validate(data)

    services = data["services"]
    assert set(services) == set(servers.ENGINES)  # the engines only
    assert all("image" in s and "build" not in s for s in services.values())
    assert services["rabbitmq"]["ports"] == ["127.0.0.1:5673:5672", "127.0.0.1:15673:15672"]
    assert services["mariadb"]["ports"] == ["127.0.0.1:3307:3306"]
    assert services["redis"]["ports"] == ["127.0.0.1:6380:6379"]
    assert services["mariadb"]["environment"]["MARIADB_ROOT_PASSWORD"] == "secret"
    assert set(data["volumes"]) == {"rabbitmq", "mariadb"}
    assert "rabbitmq:/var/lib/rabbitmq" in services["rabbitmq"]["volumes"]
    assert "mariadb:/var/lib/mysql" in services["mariadb"]["volumes"]
    # guest may log in from the host (to make the broker users over the management API)
    [conf] = [v for v in services["rabbitmq"]["volumes"] if "conf.d" in v]
    source = (servers.COMPOSE_FILE.parent / conf.split(":")[0]).read_text()
    assert "loopback_users.guest = false" in source


# --- the settings, and the broker users without rabbitmqctl -------------------------------


def test_the_script_reads_the_settings_defaults_and_starts_only_local_servers(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = Settings.model_fields
    assert fields["amqp_url"].default.get_secret_value() == servers.DEFAULT_AMQP_URL
    assert fields["db_host"].default == servers.DEFAULT_DB_HOST
    assert fields["db_port"].default == servers.DEFAULT_DB_PORT
    assert fields["redis_url"].default.get_secret_value() == servers.DEFAULT_REDIS_URL
    for name in ("AMQP_URL", "DB_HOST", "DB_PORT", "DB_PASSWORD", "REDIS_URL", "BROKER_ADMIN_URL"):
        monkeypatch.delenv(f"MEDIHAVEN_{name}", raising=False)
    assert preflight.server_targets(Settings()) == servers.targets()

    monkeypatch.setenv("MEDIHAVEN_SERVERS_DIR", str(state_dir))
    elsewhere = servers.targets(
        amqp_url="amqp://broker.internal:5672/", db_host="10.0.0.7", redis_url="redis://cache:1/0"
    )
    said: list[str] = []
    outcome = servers.up(elsewhere, say=said.append)  # another machine's: never started here
    assert outcome.ok and said == [] and recorded(state_dir) == []


def test_without_rabbitmqctl_the_preflight_makes_the_broker_users_over_the_management_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[dict[str, Any]] = []

    class ManagementApi(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(
                {"path": self.path, "auth": self.headers["Authorization"], "body": json.loads(body)}
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    api = ThreadingHTTPServer(("127.0.0.1", 0), ManagementApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        (tmp_path / "empty").mkdir()
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no rabbitmqctl
        for name in ("URL", "USER", "PASSWORD"):
            monkeypatch.delenv(f"MEDIHAVEN_BROKER_ADMIN_{name}", raising=False)
        settings = Settings(
            amqp_url=SecretStr("amqp://127.0.0.1:5672/medihaven-dev"),
            amqp_user_prefix="medihaven-",
        )
        # The development default: the broker's own host, port 15672, guest.
        assert preflight.broker_admin(settings) == ("http://127.0.0.1:15672", "guest", "guest")

        monkeypatch.setenv("MEDIHAVEN_BROKER_ADMIN_URL", f"http://127.0.0.1:{api.server_port}")
        how = preflight.provision_broker_users(settings, tmp_path / "amqp")
    finally:
        api.shutdown()
        api.server_close()
    assert how.startswith(f"the management API at http://127.0.0.1:{api.server_port}")
    [request] = received
    assert request["path"] == "/api/definitions"
    assert request["auth"] == "Basic " + base64.b64encode(b"guest:guest").decode()
    document = request["body"]
    assert {u["name"] for u in document["users"]} == {settings.broker_user(i) for i in IDENTITIES}
    assert document["vhosts"] == [{"name": "medihaven-dev"}]
    assert sorted(p.name for p in (tmp_path / "amqp").iterdir()) == sorted(IDENTITIES)


def test_the_greeting_probe_tells_a_server_from_another_program_on_its_port() -> None:
    with socket.socket() as listener:  # accepts connections, never speaks Redis
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        target = servers.Target("redis", "127.0.0.1", port)

        def accept_and_close() -> None:
            conn, _ = listener.accept()
            conn.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        assert servers.probe(target) == servers.SILENT
        thread.join(timeout=10)
    assert servers.probe(target) == servers.CLOSED


def test_a_server_that_is_installed_but_does_not_start_is_reported_with_its_output(
    tmp_path: Path, state_dir: Path
) -> None:
    port = free_port()
    env = hidden_path_env(tmp_path, state_dir, MEDIHAVEN_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    program = tmp_path / "bin" / "redis-server"  # e.g. a system Redis this user may not run
    program.write_text("#!/bin/sh\necho 'Fatal: Permission denied on /var/lib/redis' >&2\nexit 1\n")
    program.chmod(0o755)
    result = run_script(env, "up", "--only", "redis")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"Redis is installed ({program}) but did not answer on 127.0.0.1:{port}" in (
        result.stderr
    )
    assert "it exited with status 1" in result.stderr
    assert "| Fatal: Permission denied on /var/lib/redis" in result.stderr
    assert "If it runs as a system service here, start it with: " in result.stderr
    assert recorded(state_dir) == []
