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

`up(base_dir, island=net)` puts the last node on a `mesh.cluster.netns.Island` (a
partition test cuts it off with `net.cut()`, joins it again with `net.heal()`). Such a
cluster cannot live on loopback: its nodes are named `<name>@<address>` (long names), the
host's at `net.host_address`, the island's at `net.inner_address`, and each listens
(AMQP and distribution) on its own address only. The machine's epmd listens on loopback
alone, so the cluster has epmds of its own on a free port (`ERL_EPMD_PORT`, for the nodes
and for every `rabbitmqctl` of theirs): one on the host reachable at `host_address`, one
inside the namespace. The packaged `rabbitmq-env.conf` (epmd and distribution pinned to
127.0.0.1) is replaced by an empty one of the node's own. It runs with
`cluster_partition_handling = pause_minority`, as `deploy/` does, and a short
`net_ticktime` (`PARTITION_TICKTIME_S`), so the cut node notices it is alone in seconds
rather than a minute. `rabbitmqctl` for the island's node runs inside the namespace, so it
answers even while the island is cut; give `ctl` a `Node`, not a name, for such a cluster.
Cluster-wide listings (`list_queues`, `list_connections`) hang there after printing the
target node's part: the other nodes stream their rows to the CLI's own Erlang node, which
those across the namespace do not reach. `eval` (gathered on the node itself), `--local`
listings and `rabbitmq-queues quorum_status` answer.
"""

from __future__ import annotations

import argparse
import contextlib
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

from mesh.cluster import netns

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_USER = "rabbitmq"
STATE = "rabbitmq-cluster.json"
_PROCS: dict[str, subprocess.Popen[bytes]] = {}
_STARTED: list[Path] = []
_EPMDS: dict[int, subprocess.Popen[bytes]] = {}
PARTITION_TICKTIME_S = 10
"""`net_ticktime` of an island cluster: a silent peer is declared down after 10 to 12.5 s
(Erlang's default of 60 s would keep a cut node serving, unpaused, for a minute)."""


@dataclass(frozen=True)
class Node:
    """One node: its Erlang node name, AMQP port and folders."""

    name: str
    port: int
    dist_port: int
    folder: str
    host: str = "127.0.0.1"
    """The address it listens on (AMQP and, in an island cluster, distribution)."""
    epmd_port: int | None = None
    """The cluster's own epmd port (an island cluster); None: the machine's epmd."""
    netns: str | None = None
    """The network namespace it runs in (the island's node); None: the host's."""

    @property
    def url(self) -> str:
        """The AMQP URL of this node (no credentials, default vhost)."""
        return f"amqp://{self.host}:{self.port}/"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def long_names(self) -> bool:
        return self.epmd_port is not None

    def cli_env(self) -> dict[str, str]:
        """What `rabbitmqctl` for this node needs beyond the default (an island cluster:
        long names, its epmd, not the packaged loopback-only env file)."""
        if not self.long_names:
            return {}
        return {
            "RABBITMQ_USE_LONGNAME": "true",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(Path(self.folder) / "rabbitmq-env.conf"),
        }

    def cli(self, program: str, *args: str) -> list[str]:
        """`program -n <node> args…`, inside the node's namespace if it has one (so it
        reaches the node even while the island is cut)."""
        command = [program, "-q", "-n", self.name, *args]
        if self.netns is not None:
            return ["ip", "netns", "exec", self.netns, *command]
        return command

    @property
    def pid_file(self) -> Path:
        return Path(self.folder) / "rabbitmq.pid"


@dataclass(frozen=True)
class Cluster:
    """What `up` started: the nodes (the first is the one the others joined)."""

    base_dir: str
    nodes: tuple[Node, ...]
    island: netns.Island | None = None
    """Where the last node runs (`up(..., island=)`); None: every node on loopback."""
    epmd_pids: tuple[int, ...] = ()
    """The cluster's own epmds (an island cluster), stopped by `down`."""

    @property
    def island_node(self) -> Node:
        """The node on the island (the one a cut isolates)."""
        if self.island is None:
            raise ValueError("this cluster has no island")
        return self.nodes[-1]

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


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: the kernel may hand the same one out again to
    sockets bound and closed one after another (two nodes once got one dist port, and the
    second could not start)."""
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


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


def _cli(
    program: str, node: str | Node, args: Sequence[str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a RabbitMQ CLI for `node`; on a timeout nothing of it is left running."""
    if isinstance(node, Node):
        command, env = node.cli(program, *args), {**os.environ, **node.cli_env()}
    else:
        command, env = [program, "-q", "-n", node, *args], None
    proc = subprocess.Popen(  # noqa: S603 - fixed programs, arguments we build
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _end(proc)
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _end(proc: subprocess.Popen[str]) -> None:
    """End a CLI that overran. As root the wrapper runs it through `su`, whose child has a
    session of its own: killing the wrapper alone left the Erlang CLI running (seen with
    a listing that hung). SIGTERM to the group first, which `su` passes on, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def ctl(node: str | Node, *args: str, timeout_s: float = 60, check: bool = True) -> str:
    """Run `rabbitmqctl -n <node> …` (as root, the wrapper runs it as `rabbitmq`). A node
    of an island cluster must be given as a `Node` (its long name, epmd and namespace)."""
    result = _cli("rabbitmqctl", node, args, timeout_s)
    if check and result.returncode != 0:
        name = node.name if isinstance(node, Node) else node
        raise RuntimeError(
            f"rabbitmqctl -n {name} {' '.join(args)}: {(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def _env(node: Node, user: pwd.struct_passwd) -> dict[str, str]:
    folder = Path(node.folder)
    extra: dict[str, str] = {}
    if node.long_names:
        interface = "{" + node.host.replace(".", ",") + "}"
        extra = {
            **node.cli_env(),
            # distribution on the node's own address (the island's host side, or inside)
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {interface}",
        }
    return {
        **extra,
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
    conf = (
        f"listeners.tcp.local = {node.host}:{node.port}\n"
        "loopback_users.guest = true\n"
        "log.console = false\n"
        "log.file.level = info\n"
    )
    if node.long_names:
        conf += (
            "cluster_partition_handling = pause_minority\n"  # what deploy/ runs
            f"net_ticktime = {PARTITION_TICKTIME_S}\n"
        )
        # instead of the packaged one, which pins epmd and distribution to loopback
        (folder / "rabbitmq-env.conf").write_text("# an island cluster's node: no overrides\n")
        _give_to(user, folder / "rabbitmq-env.conf")
    (folder / "rabbitmq.conf").write_text(conf)
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
    command = [str(SERVER)]
    if node.netns is not None:
        # entering the namespace needs root: in there, drop to the rabbitmq user
        command = [
            "ip", "netns", "exec", node.netns,
            "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            *command,
        ]  # fmt: skip
        as_other = False
    log = (Path(node.folder) / "log" / "startup.log").open("ab")
    try:
        _PROCS[node.name] = subprocess.Popen(  # noqa: S603 - the packaged server script
            command,
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
        probe = _cli("rabbitmqctl", node, ["await_startup", "-t", "5"], max(remaining, 1) + 10)
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
    data: dict[str, object] = {
        "base_dir": cluster.base_dir,
        "nodes": [asdict(n) for n in cluster.nodes],
        "epmd_pids": list(cluster.epmd_pids),
    }
    if cluster.island is not None:
        data["island"] = asdict(cluster.island)
    (Path(cluster.base_dir) / STATE).write_text(json.dumps(data, indent=2) + "\n")


def load(base_dir: Path | str) -> Cluster | None:
    """The cluster `up` started in `base_dir`, if any."""
    path = Path(base_dir) / STATE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    island = netns.Island(**data["island"]) if data.get("island") else None
    return Cluster(
        data["base_dir"],
        tuple(Node(**n) for n in data["nodes"]),
        island,
        tuple(data.get("epmd_pids", ())),
    )


def _epmd(address: str, port: int, island: netns.Island | None, deadline: float) -> int:
    """An epmd of the cluster's own on `port`, reachable at `address` (and loopback), in
    the island's namespace if given; its pid, once it answers."""
    command = ["epmd", "-port", str(port), "-address", address]
    if island is not None:
        command = island.command(command)
    proc = subprocess.Popen(  # noqa: S603 - the packaged epmd
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while True:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex((address, port)) == 0:
                _EPMDS[proc.pid] = proc
                return proc.pid
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"epmd on {address}:{port} did not start")
        time.sleep(0.05)


def _killed_unless_gone(pid: int, within_s: float, poll_s: float) -> None:
    """Wait up to `within_s` for a process asked to stop to be gone, then SIGKILL it: a
    stop that hangs must not leave a node or an epmd behind."""
    deadline = time.monotonic() + within_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(poll_s)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _stop_epmd(pid: int) -> None:
    """Stop one of the cluster's epmds (only if that pid still is an epmd: a pid from a
    state file may have been reused)."""
    proc = _EPMDS.pop(pid, None)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    try:
        if b"epmd" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ProcessLookupError):
        return
    _killed_unless_gone(pid, 10, 0.05)


def up(
    base_dir: Path | str,
    *,
    size: int = 3,
    timeout_s: float = 90,
    island: netns.Island | None = None,
) -> Cluster:
    """Start `size` nodes on free ports in `base_dir` and cluster them with the first.

    With `island`, the last node runs in the island's namespace and the cluster runs
    `pause_minority` (see the module text). On any failure everything started so far is
    stopped and removed again.
    """
    user = _check_runnable()
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    if load(base) is not None:
        raise RuntimeError(f"a cluster is already up in {base} (run down first)")
    _reachable_by_others(base)
    _give_to(user, base)
    tag = secrets.token_hex(3)
    ports = iter(_free_ports(2 * size + 1))
    epmd_port = next(ports) if island is not None else None

    def make(i: int) -> Node:
        on_island = island is not None and i == size
        host = "127.0.0.1"
        if island is not None:
            host = island.inner_address if on_island else island.host_address
        return Node(
            name=f"mh{tag}-{i}@{host if island is not None else 'localhost'}",
            port=next(ports),
            dist_port=next(ports),
            folder=str(base / f"rabbitmq-{tag}-{i}"),
            host=host,
            epmd_port=epmd_port,
            netns=island.name if on_island and island is not None else None,
        )

    nodes = tuple(make(i) for i in range(1, size + 1))
    cluster = Cluster(str(base), nodes, island)
    _save(cluster)
    _STARTED.append(base)
    deadline = time.monotonic() + timeout_s
    try:
        if island is not None and epmd_port is not None:
            pids: list[int] = []
            cluster = Cluster(str(base), nodes, island, tuple(pids))
            for address, inside in ((island.host_address, None), (island.inner_address, island)):
                pids.append(_epmd(address, epmd_port, inside, deadline))
                cluster = Cluster(str(base), nodes, island, tuple(pids))
                _save(cluster)  # so that `down` stops it even if what follows fails
        for node in nodes:
            _prepare(node, user)
            _launch(node)
        for node in nodes:
            _await_started(node, deadline)
        first = nodes[0]
        for node in nodes[1:]:
            ctl(node, "stop_app")
            ctl(node, "join_cluster", first.name)
            ctl(node, "start_app")
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
    result = _cli("rabbitmq-diagnostics", node, ["check_if_node_is_quorum_critical"], 60)
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
            ctl(node, "stop", timeout_s=30, check=False)
        except subprocess.TimeoutExpired:
            pass
        _killed_unless_gone(pid, 20, 0.1)
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
            for pid in cluster.epmd_pids:
                _stop_epmd(pid)
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
        print(ctl(found.nodes[0], "cluster_status"))
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
