"""A local three-node MariaDB Galera cluster beside the machine's own MariaDB.

`up(base_dir)` gives every node its own datadir (one `mariadb-install-db`, copied), SQL
port, socket and Galera ports (group communication, IST, SST), bootstraps the first with
`--wsrep-new-cluster`, joins the other two one at a time (each takes a full state
transfer from a donor) and returns when all three are `Synced` in a primary component of
size 3. Nothing of the machine's own server (port 3306, /etc/mysql, /var/lib/mysql) is
read or touched: every node runs with `--defaults-file` of its own.

    python -m mesh.cluster.galera up --dir /tmp/galera     # prints the SQL ports (JSON)
    python -m mesh.cluster.galera down --dir /tmp/galera   # stops the nodes, removes D

`up(base_dir, island=net)` puts the last node in a network namespace (`mesh.cluster.netns`)
so that a test can cut it off from the others: a real partition, not a stopped process.
The nodes left on the host then listen on the island's host address (not 127.0.0.1, which
the namespace cannot reach), the island node on its inner address.

Standard library only (the `mariadb` command-line client asks the nodes for their state).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mesh.cluster import netns

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
STATE_FILE = "cluster.json"
NODES = 3
CLUSTER_NAME = "medihaven-local"


def sst_method() -> str:
    """mariabackup when installed (the donor keeps serving writes), rsync otherwise
    (the donor is blocked for the copy; fine for a test cluster's few megabytes)."""
    return "mariabackup" if shutil.which("mariabackup") else "rsync"


@dataclass
class Node:
    """One mariadbd: where it listens and keeps its files."""

    index: int
    port: int
    gmcast_port: int
    ist_port: int
    sst_port: int
    datadir: str
    socket: str
    config: str
    log: str
    pid: int | None = None
    host: str = "127.0.0.1"
    """Where it listens (SQL, group communication, IST, SST): 127.0.0.1 unless a cluster
    has an island, whose nodes must reach each other across the veth pair."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Cluster:
    """A running local cluster; `stop`/`kill`/`start` one node, `down` for all of it."""

    base_dir: str
    nodes: list[Node]
    sst: str = field(default_factory=sst_method)
    island: netns.Island | None = None
    """The namespace the last node runs in (`up(..., island=)`), or None."""
    _procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def hosts(self) -> str:
        """The nodes as `MEDIHAVEN_DB_HOSTS` takes them: `127.0.0.1:<p1>,127.0.0.1:<p2>,…`."""
        return ",".join(node.address for node in self.nodes)

    @property
    def island_node(self) -> Node | None:
        """The node inside the island (the last one), when there is an island."""
        return self.nodes[-1] if self.island is not None else None

    def node(self, which: int | Node) -> Node:
        return which if isinstance(which, Node) else self.nodes[which]

    def stop(self, which: int | Node, timeout: float = 60.0) -> None:
        """A clean shutdown (SIGTERM): the node leaves the group at once."""
        self._signal(self.node(which), signal.SIGTERM, timeout)

    def kill(self, which: int | Node, timeout: float = 30.0) -> None:
        """`kill -9`: the others notice when the node stops answering (evs.suspect_timeout)."""
        self._signal(self.node(which), signal.SIGKILL, timeout)

    def start(self, which: int | Node, timeout: float = 120.0) -> None:
        """(Re)start a node: it joins the running group (IST, or SST if it is too far behind)."""
        node = self.node(which)
        if node.pid is not None and _alive(node.pid):
            raise RuntimeError(f"node {node.index} is still running (pid {node.pid})")
        self._launch(node, bootstrap=False)
        self.wait_synced(timeout=timeout)

    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.pid is not None and _alive(node.pid)]

    def status(self, which: int | Node) -> dict[str, str]:
        """The node's `wsrep_%` status (empty when it does not answer)."""
        return _wsrep_status(self.node(which))

    def sql(self, which: int | Node, statement: str) -> str:
        """Run SQL on a node as root over its socket; the output, tab separated."""
        return _client(self.node(which), statement)

    def wait_synced(
        self,
        count: int | None = None,
        timeout: float = 120.0,
        among: list[int] | None = None,
    ) -> None:
        """Until every running node (or every node of `among`, e.g. the majority while
        the island is cut and still running) is Synced in a primary component of that
        many nodes."""
        deadline = time.monotonic() + timeout
        last: dict[int, dict[str, str]] = {}
        expected = count or 0
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.pid is not None and not _alive(node.pid):
                    raise RuntimeError(f"node {node.index} exited: {_tail(node.log)}")
            checked = [n for n in self.running() if among is None or n.index in among]
            expected = count if count is not None else len(checked)
            last = {node.index: _wsrep_status(node) for node in checked}
            if len(last) == expected and all(
                status.get("wsrep_cluster_size") == str(expected)
                and status.get("wsrep_local_state_comment") == "Synced"
                and status.get("wsrep_cluster_status") == "Primary"
                and status.get("wsrep_ready") == "ON"
                for status in last.values()
            ):
                return
            time.sleep(0.3)
        raise TimeoutError(f"the cluster did not settle at {expected} Synced nodes: {last}")

    def down(self) -> None:
        """Stop every node (SIGKILL after a grace period) and remove `base_dir`."""
        for node in self.nodes:
            if node.pid is not None and _alive(node.pid):
                with contextlib.suppress(TimeoutError, ProcessLookupError):
                    self._signal(node, signal.SIGTERM, 20.0)
            if node.pid is not None and _alive(node.pid):
                self._signal(node, signal.SIGKILL, 10.0)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- internals ---------------------------------------------------------------------

    def _signal(self, node: Node, sig: int, timeout: float) -> None:
        pid = node.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        proc = self._procs.get(node.index)
        while _alive(pid):
            if proc is not None and proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node.index} (pid {pid}) did not exit on {sig}")
            time.sleep(0.1)
        node.pid = None
        self._procs.pop(node.index, None)
        self._save()

    def _launch(self, node: Node, *, bootstrap: bool) -> None:
        args = ["mariadbd", f"--defaults-file={node.config}", f"--user={_user()}"]
        if bootstrap:
            args.append("--wsrep-new-cluster")
        if self.island is not None and node.index == self.nodes[-1].index:
            args = self.island.command(args)  # `ip netns exec` execs it: the pid is mariadbd's
        log = Path(node.log).open("ab")
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed arguments, our own files
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self._procs[node.index] = proc
        node.pid = proc.pid
        self._save()

    def _save(self) -> None:
        nodes = [asdict(node) for node in self.nodes]
        island = asdict(self.island) if self.island is not None else None
        state = {"base_dir": self.base_dir, "sst": self.sst, "nodes": nodes, "island": island}
        path = Path(self.base_dir) / STATE_FILE
        if path.parent.is_dir():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(path)


def up(
    base_dir: str | Path,
    *,
    nodes: int = NODES,
    timeout: float = 180.0,
    provider_options: str = "",
    island: netns.Island | None = None,
) -> Cluster:
    """Start a fresh cluster in `base_dir` (must not hold one already) and wait for it.

    With `island` (made by the caller, who also removes it after `down`), the last node
    runs inside it and every node listens where the others can reach it across the
    veth pair: the island's host address for the host's nodes, its inner address there."""
    if not PROVIDER.exists():
        raise RuntimeError(f"{PROVIDER} is missing: install galera-4")
    base = Path(base_dir).resolve()
    if (base / STATE_FILE).exists():
        raise RuntimeError(f"{base} already holds a cluster: `down` it first")
    base.mkdir(parents=True, exist_ok=True)
    hosts = ["127.0.0.1"] * nodes
    if island is not None:
        hosts = [island.host_address] * (nodes - 1) + [island.inner_address]
    # The island's own namespace is empty: ports free on the host are free there too.
    ports = _free_ports(4 * nodes, hosts[0])
    members = [
        Node(
            index=i,
            port=ports[4 * i],
            gmcast_port=ports[4 * i + 1],
            ist_port=ports[4 * i + 2],
            sst_port=ports[4 * i + 3],
            datadir=str(base / f"node{i}" / "data"),
            socket=str(base / f"node{i}" / "mariadb.sock"),
            config=str(base / f"node{i}" / "my.cnf"),
            log=str(base / f"node{i}" / "mariadb.log"),
            host=hosts[i],
        )
        for i in range(nodes)
    ]
    cluster = Cluster(str(base), members, island=island)
    try:
        template = base / "template"
        _install_db(template, base / "install.log")
        for node in members:
            Path(node.datadir).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template, node.datadir)
            Path(node.config).write_text(_config(node, members, cluster.sst, provider_options))
        shutil.rmtree(template)
        _chown(base)
        cluster._save()
        cluster._launch(members[0], bootstrap=True)
        _wait_answering(cluster, members[0], timeout)
        # Root over TCP from 127.0.0.1, like the machine's own server (replicated by Galera);
        # with an island also from its host address, the source of every host connection
        # to a node (on the host's side or the island's).
        for source in sorted({"127.0.0.1", hosts[0]}):
            _client(
                members[0],
                f"CREATE USER IF NOT EXISTS 'root'@'{source}' IDENTIFIED BY '';"
                f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{source}' WITH GRANT OPTION;",
            )
        cluster.wait_synced(count=1, timeout=timeout)
        for count, node in enumerate(members[1:], start=2):
            cluster._launch(node, bootstrap=False)
            cluster.wait_synced(count=count, timeout=timeout)
    except BaseException:
        cluster.down()
        raise
    return cluster


def load(base_dir: str | Path) -> Cluster:
    """The cluster recorded in `base_dir` (started by another process)."""
    state = json.loads((Path(base_dir) / STATE_FILE).read_text())
    island = netns.Island(**state["island"]) if state.get("island") else None
    nodes = [Node(**n) for n in state["nodes"]]
    return Cluster(state["base_dir"], nodes, sst=state["sst"], island=island)


def down(base_dir: str | Path) -> None:
    """Stop the cluster recorded in `base_dir` and remove the folder."""
    path = Path(base_dir)
    if (path / STATE_FILE).exists():
        load(path).down()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _config(node: Node, members: list[Node], sst: str, provider_options: str) -> str:
    peers = ",".join(f"{m.host}:{m.gmcast_port}" for m in members)
    options = ";".join(
        option
        for option in (
            f"gmcast.listen_addr=tcp://{node.host}:{node.gmcast_port}",
            f"ist.recv_addr={node.host}:{node.ist_port}",
            "gcache.size=64M",
            # Notice a killed peer in about 3 s rather than 5-15 s (loopback, no real lag).
            "evs.suspect_timeout=PT3S",
            "evs.inactive_timeout=PT6S",
            "evs.install_timeout=PT6S",
            provider_options,
        )
        if option
    )
    lines = [
        "[mysqld]",
        f"datadir={node.datadir}",
        f"socket={node.socket}",
        f"pid-file={Path(node.datadir).parent / 'mariadb.pid'}",
        f"port={node.port}",
        f"bind-address={node.host}",
        "skip-name-resolve",
        "performance_schema=OFF",
        "innodb_buffer_pool_size=64M",
        "innodb_log_file_size=32M",
        "innodb_flush_log_at_trx_commit=2",
        "innodb_autoinc_lock_mode=2",
        "binlog_format=ROW",
        "default_storage_engine=InnoDB",
        "max_connections=400",
        "wsrep_on=ON",
        f"wsrep_provider={PROVIDER}",
        f"wsrep_cluster_name={CLUSTER_NAME}",
        f"wsrep_cluster_address=gcomm://{peers}",
        f"wsrep_node_name=node{node.index}",
        f"wsrep_node_address={node.host}",
        f"wsrep_node_incoming_address={node.host}:{node.port}",
        f"wsrep_sst_receive_address={node.host}:{node.sst_port}",
        f"wsrep_sst_method={sst}",
        f"wsrep_provider_options={options}",
        "wsrep_slave_threads=2",
    ]
    if sst == "mariabackup":
        lines.append("wsrep_sst_auth=root:")
    return "\n".join(lines) + "\n"


def _install_db(datadir: Path, log_path: Path) -> None:
    with log_path.open("wb") as log:
        result = subprocess.run(  # noqa: S603 - fixed arguments, our own folder
            [  # noqa: S607 - the packaged tool, found on PATH like mariadbd
                "mariadb-install-db",
                "--no-defaults",
                f"--user={_user()}",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed: {_tail(str(log_path))}")


def _user() -> str:
    """The account mariadbd drops to. As root that is `mysql` when it exists: the rsync
    SST daemon, started by the server, runs as `nobody` under root and could not read
    a datadir that only its owner may enter."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        return "root"
    return "mysql"


def _chown(base: Path) -> None:
    user = _user()
    if os.geteuid() != 0 or user == "root":
        return
    entry = pwd.getpwnam(user)
    for path in [base, *base.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _client(node: Node, statement: str, timeout: float = 10.0) -> str:
    args = ["mariadb", "--no-defaults", f"--socket={node.socket}", "-uroot", "-N", "-B"]
    result = subprocess.run(  # noqa: S603 - our own node's socket; SQL from this module
        [*args, "-e", statement],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode(errors="replace").strip())
    return result.stdout.decode()


def _wsrep_status(node: Node) -> dict[str, str]:
    try:
        out = _client(node, "SHOW GLOBAL STATUS LIKE 'wsrep\\_%'", timeout=5.0)
    except (RuntimeError, subprocess.TimeoutExpired):
        return {}
    status: dict[str, str] = {}
    for line in out.splitlines():
        name, _, value = line.partition("\t")
        status[name] = value
    return status


def _wait_answering(cluster: Cluster, node: Node, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.pid is None or not _alive(node.pid):
            raise RuntimeError(f"node {node.index} exited: {_tail(node.log)}")
        if _wsrep_status(node):
            return
        time.sleep(0.2)
    raise TimeoutError(f"node {node.index} did not answer in {timeout} s: {_tail(node.log)}")


def _free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct free ports on `host` (held open together so none is handed out twice)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            socks.append(sock)
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) is not alive.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().split(") ", 1)[1][:1] != "Z"
        except (OSError, IndexError):
            return False
    return done == 0


def _tail(path: str, size: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-size:]
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.cluster.galera")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", required=True, type=Path, help="where the nodes keep their files")
    args = parser.parse_args(argv)
    if args.action == "up":
        cluster = up(args.dir)
        print(json.dumps({"hosts": cluster.hosts, "ports": cluster.ports, "sst": cluster.sst}))
    elif args.action == "down":
        down(args.dir)
    else:
        cluster = load(args.dir)
        for node in cluster.nodes:
            status = cluster.status(node)
            print(
                node.index,
                node.address,
                status.get("wsrep_local_state_comment", "down"),
                status.get("wsrep_cluster_size", "-"),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
