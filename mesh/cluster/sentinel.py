"""A local Redis Sentinel set for tests and trials: 1 master, 2 replicas, 3 Sentinels.

`up(base_dir)` starts them beside the machine's own Redis (never on 6379: free ports, or
the ones given), each `redis-server` with a config file of its own under `base_dir`
(Sentinels are `redis-server <conf> --sentinel`: Debian ships no redis-sentinel
program), and returns once every Sentinel names the same master and sees the two
replicas and the other two Sentinels. Failure detection is made short
(`DOWN_AFTER_MS`, `FAILOVER_TIMEOUT_MS`), so a killed master is replaced in a few seconds.
`down(base_dir)` stops exactly what `up` started there (pids kept in
`base_dir/sentinel-set.json`, each signalled only while it still runs the program started
then).

With `island=` (a `mesh.cluster.netns.Island`) the master runs in that network
namespace, listening on `island.inner_address`, while the replicas and Sentinels stay on
the host (on 127.0.0.1 and `island.host_address`, where the island reaches them): cutting
the island is then a real partition of the master from everything else, the classic
Sentinel split-brain (`island_sentinels=1` strands one Sentinel with it, as a zone
holding a Sentinel beside the master would). `min_replicas_to_write` and
`min_replicas_max_lag` set the guard against it on every node (a master that hears from
no replica for the lag stops taking writes: NOREPLICAS). Standard library only, so it
runs before any virtualenv exists:

    python -m mesh.cluster.sentinel up --dir var/sentinel     # prints the settings to use
    python -m mesh.cluster.sentinel down --dir var/sentinel
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from mesh.cluster.netns import Island

HOST = "127.0.0.1"
MASTER_NAME = "medihaven"
QUORUM = 2
DOWN_AFTER_MS = 1000
"""A master silent this long is subjectively down; with the quorum, a failover starts."""
FAILOVER_TIMEOUT_MS = 3000
"""How long a failover may take before another Sentinel tries again."""
STATE_FILE = "sentinel-set.json"
PROGRAMS = ("redis-server", "valkey-server")


@dataclass(frozen=True)
class SentinelSet:
    """Where the set runs. `master` is the master when `up` returned (a failover moves
    it: ask `master_address`)."""

    base_dir: str
    master_name: str
    master: tuple[str, int]
    replicas: tuple[tuple[str, int], ...]
    sentinels: tuple[tuple[str, int], ...]
    pids: dict[str, int]
    """Port (as text) → pid of the process serving it."""

    @property
    def sentinels_setting(self) -> str:
        """The value of MEDIHAVEN_REDIS_SENTINELS for these Sentinels."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def pid_of(self, address: tuple[str, int]) -> int:
        return self.pids[str(address[1])]


class SentinelError(RuntimeError):
    """The set did not come up (or down) as asked; the message says which part."""


# ------------------------------------------------------------------ a minimal RESP client


def command(address: tuple[str, int], *args: str, timeout: float = 1.0) -> object:
    """Send one command, return its decoded reply (errors come back as SentinelError)."""
    return commands(address, args, timeout=timeout)[-1]


def commands(address: tuple[str, int], *each: Sequence[str], timeout: float = 1.0) -> list[object]:
    """Send commands on one connection (WAIT counts the writes of its own connection)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        payload = b""
        for args in each:
            payload += f"*{len(args)}\r\n".encode()
            for arg in args:
                data = arg.encode()
                payload += b"$%d\r\n%s\r\n" % (len(data), data)
        sock.sendall(payload)
        stream = sock.makefile("rb")
        return [_read(stream) for _ in each]


def _read(stream: IO[bytes]) -> object:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise SentinelError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        return stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(stream) for _ in range(count)]
    raise SentinelError(f"unexpected reply {line!r}")


def master_address(sentinel: tuple[str, int], name: str = MASTER_NAME) -> tuple[str, int] | None:
    """The master this Sentinel names now, or None (unreachable, or none known)."""
    try:
        reply = command(sentinel, "SENTINEL", "get-master-addr-by-name", name)
    except (OSError, SentinelError):
        return None
    if not isinstance(reply, list) or len(reply) != 2:
        return None
    return str(reply[0]), int(str(reply[1]))


def agreed_master(found: SentinelSet) -> tuple[str, int] | None:
    """The master every reachable Sentinel names, with all three reachable; else None."""
    answers = {master_address(s, found.master_name) for s in found.sentinels}
    if len(answers) != 1 or None in answers:
        return None
    return answers.pop()


def _fields(reply: object) -> dict[str, str]:
    items = [str(x) for x in reply] if isinstance(reply, list) else []
    return dict(zip(items[::2], items[1::2], strict=False))


def _info(address: tuple[str, int], section: str) -> dict[str, str]:
    text = str(command(address, "INFO", section))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def healthy(found: SentinelSet) -> bool:
    """Every Sentinel names the same master and sees the 2 replicas and 2 other Sentinels,
    none of them down, and both replicas acknowledge a write to that master (WAIT)."""
    master = agreed_master(found)
    if master is None:
        return False
    try:
        for sentinel in found.sentinels:
            state = _fields(command(sentinel, "SENTINEL", "master", found.master_name))
            if state.get("num-other-sentinels") != "2" or state.get("num-slaves") != "2":
                return False
            if "s_down" in state.get("flags", "") or "o_down" in state.get("flags", ""):
                return False
            replicas = command(sentinel, "SENTINEL", "replicas", found.master_name)
            for replica in replicas if isinstance(replicas, list) else []:
                if "down" in _fields(replica).get("flags", ""):
                    return False
        info = _info(master, "replication")
        if info.get("role") != "master" or info.get("connected_slaves") != "2":
            return False
        # Both replicas acknowledge a write: for a second after their first sync they do
        # not yet, and a WAIT would find none.
        wait = ("WAIT", "2", "200")
        return commands(master, ("SET", "sentinel-set:ready", "1"), wait)[-1] == 2
    except (OSError, SentinelError, ValueError):
        return False


# ------------------------------------------------------------------ processes


def _program() -> str:
    for name in PROGRAMS:
        found = shutil.which(name)
        if found:
            return found
    raise SentinelError("redis-server is not installed (Debian: apt-get install redis-server)")


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None  # exited, not yet reaped
    return fields[19]


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this interpreter started (reaped by `down`, so none lingers as a zombie)."""


def _spawn(
    program: str, conf: Path, sentinel: bool, island: Island | None = None
) -> subprocess.Popen[bytes]:
    args = [program, str(conf), *(["--sentinel"] if sentinel else [])]
    if island is not None:
        args = island.command(args)  # `ip netns exec` execs redis-server: same pid
    log = (conf.parent / "stdout.log").open("ab")
    with log:
        proc = subprocess.Popen(  # noqa: S603 - redis-server from PATH, a config we wrote
            args,
            cwd=conf.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `python -m mesh.cluster.sentinel up`
        )
    _children[proc.pid] = proc
    return proc


@dataclass(frozen=True)
class _Layout:
    """Where each kind of process listens and how the others name it."""

    master_host: str
    """The master's address (127.0.0.1, or the island's inner address)."""
    host_binds: str
    """What the replicas and Sentinels bind (with an island, also its host address)."""
    announce: str | None
    """The address replicas announce (the island's host address: where the master, the
    Sentinels and clients all reach them), or None (seen as 127.0.0.1 anyway)."""

    @property
    def replica_host(self) -> str:
        return self.announce or HOST


def _layout(island: Island | None) -> _Layout:
    if island is None:
        return _Layout(HOST, HOST, None)
    return _Layout(island.inner_address, f"{HOST} {island.host_address}", island.host_address)


def _redis_conf(
    folder: Path,
    port: int,
    master: int | None,
    layout: _Layout,
    guard: tuple[int, int],
) -> Path:
    lines = [
        f"port {port}",
        f"bind {layout.master_host if master is None else layout.host_binds}",
        f'dir "{folder}"',
        f'logfile "{folder / "redis.log"}"',
        'save ""',
        "appendonly no",
        "daemonize no",
        # Sentinel reconfigures replicas with REPLICAOF and CONFIG REWRITE.
        "replica-read-only yes",
        # A replica's first sync at once (Redis 7 waits 5 s for more replicas to share it).
        "repl-diskless-sync-delay 0",
    ]
    if master is not None:
        lines.append(f"replicaof {layout.master_host} {master}")
        if layout.announce:
            lines.append(f"replica-announce-ip {layout.announce}")
    if layout.announce:
        # The island's nodes meet on the veth pair, not loopback: without a password,
        # protected mode would refuse them (-DENIED). A private link, made for the test.
        lines.append("protected-mode no")
    to_write, max_lag = guard
    if to_write:
        # On every node, since any of them may be promoted.
        lines += [f"min-replicas-to-write {to_write}", f"min-replicas-max-lag {max_lag}"]
    conf = folder / "redis.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _sentinel_conf(
    folder: Path,
    port: int,
    name: str,
    master: int,
    replicas: list[int],
    layout: _Layout,
    bind: str,
) -> Path:
    lines = [
        f"port {port}",
        f"bind {bind}",
        f'dir "{folder}"',
        f'logfile "{folder / "sentinel.log"}"',
        "daemonize no",
        f"sentinel monitor {name} {layout.master_host} {master} {QUORUM}",
        f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {name} 1",
        # Known from the start: otherwise found in the master's INFO, asked every 10 s.
        *(f"sentinel known-replica {name} {layout.replica_host} {replica}" for replica in replicas),
    ]
    conf = folder / "sentinel.conf"  # Sentinel rewrites it: a file of its own, writable
    conf.write_text("\n".join(lines) + "\n")
    return conf


def up(
    base_dir: str | Path,
    ports: Sequence[int] | None = None,
    *,
    master_name: str = MASTER_NAME,
    timeout: float = 60.0,
    island: Island | None = None,
    min_replicas_to_write: int = 0,
    min_replicas_max_lag: int = 10,
    island_sentinels: int = 0,
) -> SentinelSet:
    """Start the set under `base_dir`: `ports` are the master's, two replicas' and three
    Sentinels' (six; default: free ports). Waits until it is healthy (see `healthy`);
    on failure stops what it started and raises SentinelError.

    `island`: the master runs in that (existing) namespace, the rest on the host (see the
    module text); the caller makes and removes the island, after `down`.
    `min_replicas_to_write` > 0: each node refuses writes as a master while fewer replicas
    than that acknowledged it within `min_replicas_max_lag` seconds (0: Redis' default,
    writes always taken). `island_sentinels`: that many of the Sentinels (the last ones,
    at most 3 - QUORUM, so the others can still fail over) run on the island beside the
    master, stranded with it when it is cut."""
    base = Path(base_dir).resolve()
    if (base / STATE_FILE).exists():
        raise SentinelError(f"a set already runs from {base} (down it first)")
    base.mkdir(parents=True, exist_ok=True)
    chosen = list(ports) if ports else _free_ports(6)
    if len(chosen) != 6 or 6379 in chosen or len(set(chosen)) != 6:
        raise SentinelError("six distinct ports are needed, none of them 6379")
    if not 0 <= min_replicas_to_write <= 2 or min_replicas_max_lag < 1:
        raise SentinelError("min_replicas_to_write is 0 to 2, min_replicas_max_lag 1 or more")
    if not 0 <= island_sentinels <= 3 - QUORUM or (island_sentinels and island is None):
        raise SentinelError(f"island_sentinels is 0 to {3 - QUORUM}, and needs an island")
    program = _program()
    layout = _layout(island)
    stranded = set(chosen[6 - island_sentinels :]) if island_sentinels else set()
    guard = (min_replicas_to_write, min_replicas_max_lag)
    master, *replicas = chosen[:3]
    started: dict[str, int] = {}
    procs: list[subprocess.Popen[bytes]] = []
    found = SentinelSet(
        str(base),
        master_name,
        (layout.master_host, master),
        tuple((layout.replica_host, p) for p in replicas),
        tuple((layout.master_host if p in stranded else HOST, p) for p in chosen[3:]),
        started,
    )
    try:
        for port in chosen[:3]:
            folder = base / f"redis-{port}"
            folder.mkdir(parents=True, exist_ok=True)
            is_master = port == master
            conf = _redis_conf(folder, port, None if is_master else master, layout, guard)
            on = island if is_master else None
            procs.append(_spawn(program, conf, sentinel=False, island=on))
            started[str(port)] = procs[-1].pid
            _save(found)
        for port in chosen[3:]:
            folder = base / f"sentinel-{port}"
            folder.mkdir(parents=True, exist_ok=True)
            inside = port in stranded
            bind = layout.master_host if inside else layout.host_binds
            conf = _sentinel_conf(folder, port, master_name, master, replicas, layout, bind)
            procs.append(_spawn(program, conf, sentinel=True, island=island if inside else None))
            started[str(port)] = procs[-1].pid
            _save(found)
        deadline = time.monotonic() + timeout
        while not healthy(found):
            for proc in procs:
                if proc.poll() is not None:
                    raise SentinelError(f"{proc.args!r} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise SentinelError(f"the Sentinels did not agree on a master in {timeout} s")
            time.sleep(0.1)
    except BaseException:
        down(base)
        raise
    return found


def _save(found: SentinelSet) -> None:
    state = asdict(found)
    state["start_times"] = {port: _start_time(pid) for port, pid in found.pids.items()}
    path = Path(found.base_dir) / STATE_FILE
    path.write_text(json.dumps(state, indent=2) + "\n")


def load(base_dir: str | Path) -> SentinelSet | None:
    """The set `up` started under `base_dir`, if it has not been stopped."""
    path = Path(base_dir).resolve() / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    state.pop("start_times", None)
    return SentinelSet(
        state["base_dir"],
        state["master_name"],
        tuple(state["master"]),
        tuple(tuple(r) for r in state["replicas"]),
        tuple(tuple(s) for s in state["sentinels"]),
        {str(k): int(v) for k, v in state["pids"].items()},
    )


def kill(found: SentinelSet, address: tuple[str, int]) -> None:
    """`kill -9` the process serving `address` (the master, to force a failover), if it is
    still the one `up` started."""
    pid = found.pid_of(address)
    if pid not in _children:
        state = json.loads((Path(found.base_dir) / STATE_FILE).read_text())
        if _start_time(pid) != state["start_times"].get(str(address[1])):
            raise SentinelError(f"{address[0]}:{address[1]} no longer runs what up started")
    os.kill(pid, signal.SIGKILL)
    proc = _children.get(pid)
    if proc is not None:
        proc.wait(10)


def down(base_dir: str | Path, timeout: float = 10.0) -> None:
    """Stop every process `up` started under `base_dir` (SIGTERM, then SIGKILL), only those
    still running the program started then; forget the set."""
    path = Path(base_dir).resolve() / STATE_FILE
    if not path.exists():
        return
    state = json.loads(path.read_text())
    mine = {int(pid): state.get("start_times", {}).get(port) for port, pid in state["pids"].items()}
    alive = [pid for pid, start in mine.items() if start and _start_time(pid) == start]
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in alive:
        proc = _children.pop(pid, None)
        if proc is not None:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            continue
        while _start_time(pid) == mine[pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        if _start_time(pid) == mine[pid]:
            os.kill(pid, signal.SIGKILL)
    for pid in mine:
        child = _children.pop(pid, None)
        if child is not None:
            child.wait()  # killed earlier (kill -9 of the master): reaped here
    path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mesh.cluster.sentinel",
        description="Start or stop a local Redis Sentinel set (1 master, 2 replicas, "
        "3 Sentinels) beside the machine's own Redis.",
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", required=True, help="folder for configs, data, logs, pids")
    parser.add_argument(
        "--ports",
        default="",
        help="six comma-separated ports: master, 2 replicas, 3 Sentinels (default: free)",
    )
    parser.add_argument("--master-name", default=MASTER_NAME)
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            ports = [int(p) for p in args.ports.split(",") if p.strip()] or None
            found = up(args.dir, ports, master_name=args.master_name)
            print(f"Redis Sentinel set up; master {found.master[0]}:{found.master[1]}.")
            print("Point the mesh at it with:")
            print(f"  MEDIHAVEN_REDIS_SENTINELS={found.sentinels_setting}")
            print(f"  MEDIHAVEN_REDIS_SENTINEL_MASTER={found.master_name}")
        elif args.action == "down":
            down(args.dir)
            print("Redis Sentinel set stopped.")
        else:
            current = load(args.dir)
            if current is None:
                print("no set runs from there")
                return 1
            master = agreed_master(current)
            print(f"master: {f'{master[0]}:{master[1]}' if master else 'none agreed'}")
    except SentinelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
