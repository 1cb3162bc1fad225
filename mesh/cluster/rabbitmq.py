"""A local three-node RabbitMQ cluster beside the machine's own broker (tests, `make`).

`up(base_dir)` starts three nodes on free loopback ports and clusters them; `kill(node)`
(`kill -9`), `start(node)` and `down(base_dir)` are what the node-loss tests need.
`python -m mesh.cluster.rabbitmq up|down --dir D` does the same from a shell (`make
cluster-rabbitmq`); the cluster's state is kept in `D/rabbitmq-cluster.json`, so `down`
works from another process.

Why each setting (the packaged files are for the machine's own node, which is never
touched): `/etc/rabbitmq/rabbitmq.conf` pins the listener to 5672, so each node gets a
config file of its own (`RABBITMQ_CONFIG_FILE`) with its own listener and an empty
plugins file (no management or Prometheus listener to collide); its own node name,
distribution port, data and log folders. The server drops to the `rabbitmq` user, so the
folders belong to it, and every node runs with that user's home, hence its Erlang cookie,
which `rabbitmqctl` (as root it runs as `rabbitmq` too) shares. `rabbitmq-env.conf` still
applies: epmd and distribution stay on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_USER = "rabbitmq"
STATE = "rabbitmq-cluster.json"
_PROCS: dict[str, subprocess.Popen[bytes]] = {}
_STARTED: list[Path] = []


@dataclass(frozen=True)
class Node:
    """One node: its Erlang node name, AMQP port and folders."""

    name: str
    port: int
    dist_port: int
    folder: str

    @property
    def url(self) -> str:
        """The AMQP URL of this node (no credentials, default vhost)."""
        return f"amqp://127.0.0.1:{self.port}/"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return Path(self.folder) / "rabbitmq.pid"


@dataclass(frozen=True)
class Cluster:
    """What `up` started: the nodes (the first is the one the others joined)."""

    base_dir: str
    nodes: tuple[Node, ...]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def addresses(self) -> str:
        """`host:port,…` of every node (`MEDIHAVEN_AMQP_NODES`)."""
        return ",".join(n.address for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rabbitmq_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RABBITMQ_USER)
    except KeyError:
        raise RuntimeError("there is no `rabbitmq` user: is RabbitMQ installed?") from None


def _check_runnable() -> pwd.struct_passwd:
    user = _rabbitmq_user()
    if not SERVER.is_file() or shutil.which("rabbitmqctl") is None:
        raise RuntimeError(f"RabbitMQ is not installed here ({SERVER}, rabbitmqctl)")
    if os.geteuid() not in (0, user.pw_uid):
        raise RuntimeError("starting RabbitMQ nodes needs root or the `rabbitmq` user")
    return user


def _give_to(user: pwd.struct_passwd, path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, user.pw_uid, user.pw_gid)


def _reachable_by_others(folder: Path) -> None:
    """The server runs as `rabbitmq`: every parent of its folders must let it through."""
    for parent in folder.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(
                f"{parent} is not traversable by the rabbitmq user; use a folder under /tmp"
            )


def ctl(node: str, *args: str, timeout_s: float = 60, check: bool = True) -> str:
    """Run `rabbitmqctl -n <node> …` (as root, the wrapper runs it as `rabbitmq`)."""
    result = subprocess.run(  # noqa: S603 - fixed program, arguments we build
        ["rabbitmqctl", "-q", "-n", node, *args],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl -n {node} {' '.join(args)}: {(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def _env(node: Node, user: pwd.struct_passwd) -> dict[str, str]:
    folder = Path(node.folder)
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": user.pw_dir,  # the rabbitmq user's Erlang cookie, shared with rabbitmqctl
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(node.pid_file),
    }


def _prepare(node: Node, user: pwd.struct_passwd) -> None:
    folder = Path(node.folder)
    for sub in (folder, folder / "mnesia", folder / "log"):
        sub.mkdir(parents=True, exist_ok=True)
        _give_to(user, sub)
    (folder / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = 127.0.0.1:{node.port}\n"
        "loopback_users.guest = true\n"
        "log.console = false\n"
        "log.file.level = info\n"
    )
    (folder / "enabled_plugins").write_text("[].\n")  # no management/Prometheus listener
    for name in ("rabbitmq.conf", "enabled_plugins"):
        _give_to(user, folder / name)


def _pid(node: Node) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _launch(node: Node) -> None:
    user = _check_runnable()
    as_other = os.geteuid() != user.pw_uid
    log = (Path(node.folder) / "log" / "startup.log").open("ab")
    try:
        _PROCS[node.name] = subprocess.Popen(  # noqa: S603 - the packaged server script
            [str(SERVER)],
            cwd=node.folder,
            env=_env(node, user),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=user.pw_uid if as_other else None,
            group=user.pw_gid if as_other else None,
            extra_groups=[] if as_other else None,
            start_new_session=True,
        )
    finally:
        log.close()


def _await_started(node: Node, deadline: float) -> None:
    """Until the node's RabbitMQ application runs (or its process died)."""
    while True:
        proc = _PROCS.get(node.name)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{node.name} exited at start: {_startup_log(node)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{node.name} did not start in time: {_startup_log(node)}")
        probe = subprocess.run(  # noqa: S603
            ["rabbitmqctl", "-q", "-n", node.name, "await_startup", "-t", "5"],  # noqa: S607
            capture_output=True,
            timeout=max(remaining, 1) + 10,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.3)


def _startup_log(node: Node) -> str:
    path = Path(node.folder) / "log" / "startup.log"
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no startup log)"


def _save(cluster: Cluster) -> None:
    data = {"base_dir": cluster.base_dir, "nodes": [asdict(n) for n in cluster.nodes]}
    (Path(cluster.base_dir) / STATE).write_text(json.dumps(data, indent=2) + "\n")


def load(base_dir: Path | str) -> Cluster | None:
    """The cluster `up` started in `base_dir`, if any."""
    path = Path(base_dir) / STATE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Cluster(data["base_dir"], tuple(Node(**n) for n in data["nodes"]))


def up(base_dir: Path | str, *, size: int = 3, timeout_s: float = 90) -> Cluster:
    """Start `size` nodes on free ports in `base_dir` and cluster them with the first.

    On any failure everything started so far is stopped and removed again.
    """
    user = _check_runnable()
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    if load(base) is not None:
        raise RuntimeError(f"a cluster is already up in {base} (run down first)")
    _reachable_by_others(base)
    _give_to(user, base)
    tag = secrets.token_hex(3)
    nodes = tuple(
        Node(
            name=f"mh{tag}-{i}@localhost",
            port=_free_port(),
            dist_port=_free_port(),
            folder=str(base / f"rabbitmq-{tag}-{i}"),
        )
        for i in range(1, size + 1)
    )
    cluster = Cluster(str(base), nodes)
    _save(cluster)
    _STARTED.append(base)
    deadline = time.monotonic() + timeout_s
    try:
        for node in nodes:
            _prepare(node, user)
            _launch(node)
        for node in nodes:
            _await_started(node, deadline)
        first = nodes[0].name
        for node in nodes[1:]:
            ctl(node.name, "stop_app")
            ctl(node.name, "join_cluster", first)
            ctl(node.name, "start_app")
        wait_s = str(int(max(deadline - time.monotonic(), 5)))
        ctl(first, "await_online_nodes", str(size), "-t", wait_s)
    except BaseException:
        down(base)
        raise
    return cluster


def quorum_safe(node: Node) -> bool:
    """Whether losing `node` now leaves every quorum queue its majority (no queue with
    only the minimum of members online, e.g. while a restarted node's members are still
    catching up): what a rolling restart, or a test, waits for before taking one away."""
    result = subprocess.run(  # noqa: S603
        ["rabbitmq-diagnostics", "-q", "-n", node.name, "check_if_node_is_quorum_critical"],  # noqa: S607
        capture_output=True,
        timeout=60,
    )
    return result.returncode == 0


def await_quorum_safe(node: Node, timeout_s: float = 60) -> None:
    """Until `quorum_safe(node)`; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not quorum_safe(node):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"losing {node.name} would still cost quorum queues their majority")
        time.sleep(0.5)


def kill(node: Node) -> None:
    """`kill -9` the node's Erlang VM (no goodbye to its peers) and wait until it is gone."""
    pid = _pid(node)
    if pid is None:
        raise RuntimeError(f"{node.name} has no pid file (not running?)")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc = _PROCS.pop(node.name, None)
    if proc is not None:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    node.pid_file.unlink(missing_ok=True)


def start(node: Node, *, timeout_s: float = 90) -> None:
    """Start a stopped or killed node again: it rejoins its cluster from its data folder."""
    pid = _pid(node)
    if pid is not None and _alive(pid):
        raise RuntimeError(f"{node.name} is still running")
    _launch(node)
    _await_started(node, time.monotonic() + timeout_s)


def _stop(node: Node) -> None:
    pid = _pid(node)
    if pid is not None and _alive(pid):
        try:
            ctl(node.name, "stop", timeout_s=30, check=False)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc = _PROCS.pop(node.name, None)
    if proc is not None:
        if proc.poll() is None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def down(base_dir: Path | str | None = None) -> None:
    """Stop every node of the cluster in `base_dir` (default: every cluster this process
    started) and remove their folders and the state file."""
    bases = [Path(base_dir)] if base_dir is not None else list(_STARTED)
    for base in bases:
        cluster = load(base)
        if cluster is not None:
            for node in cluster.nodes:
                _stop(node)
            for node in cluster.nodes:
                shutil.rmtree(node.folder, ignore_errors=True)
            (base / STATE).unlink(missing_ok=True)
        if base in _STARTED:
            _STARTED.remove(base)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mesh.cluster.rabbitmq", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", required=True, type=Path, help="working folder of the cluster")
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "down":
        down(args.dir)
        print(f"the RabbitMQ cluster in {args.dir} is down and removed")
        return 0
    if args.command == "status":
        found = load(args.dir)
        if found is None:
            print(f"no RabbitMQ cluster in {args.dir}")
            return 1
        print(ctl(found.nodes[0].name, "cluster_status"))
        return 0
    started = time.monotonic()
    cluster = up(args.dir, size=args.size)
    print(f"{len(cluster.nodes)} RabbitMQ nodes clustered in {time.monotonic() - started:.1f} s:")
    for node in cluster.nodes:
        print(f"  {node.name}  {node.url}")
    print(f"MEDIHAVEN_AMQP_URL={cluster.urls[0]}  MEDIHAVEN_AMQP_NODES={cluster.addresses}")
    print(f"stop it with: python -m mesh.cluster.rabbitmq down --dir {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
