"""Network islands: one node of a local cluster in its own network namespace, so that a
test can cut it off from the others and join it again (a real partition, not a kill).

An `Island` is a namespace joined to the host by a veth pair on a /30 of its own:
the host side gets `10.213.<subnet>.1`, the namespace side `10.213.<subnet>.2`. A node
started with `island.command([...])` listens on `inner_address`; the nodes left on the
host listen on `host_address` (a local address of the host, reachable from the host's
own processes whether or not the island is cut).

`cut()` takes the namespace's side of the link down. Measured on this machine: from the
host, packets to the island are then silently dropped (a connect times out, an open
connection stalls), as behind a failed switch; from inside, the host is unreachable at
once. `heal()` brings the link back. Needs root and iproute2 (`ip netns`, veth); no
netem or iptables (this kernel has neither).

    with island("mhgalera", 7) as net:
        subprocess.Popen(net.command(["mariadbd", ...]))
        net.cut()
        ...
        net.heal()

Standard library only, like the rest of `mesh.cluster`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PREFIX = "10.213"
MAX_NAME = 12
"""Interface names are at most 15 characters: the name plus `-h`/`-n`."""


@dataclass(frozen=True)
class Island:
    """A namespace `name` behind a veth pair (`<name>-h` on the host, `<name>-n` inside)."""

    name: str
    subnet: int

    @property
    def host_address(self) -> str:
        return f"{PREFIX}.{self.subnet}.1"

    @property
    def inner_address(self) -> str:
        return f"{PREFIX}.{self.subnet}.2"

    @property
    def host_link(self) -> str:
        return f"{self.name}-h"

    @property
    def inner_link(self) -> str:
        return f"{self.name}-n"

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` run inside the namespace (`ip netns exec` execs them: same pid)."""
        return ["ip", "netns", "exec", self.name, *args]

    def cut(self) -> None:
        """Partition: the island's side of the link goes down (see the module text)."""
        _ip("netns", "exec", self.name, "ip", "link", "set", self.inner_link, "down")

    def heal(self) -> None:
        """The link back up; neighbour entries that failed while cut are forgotten, so the
        first packet after it is not held back by a stale ARP failure."""
        _ip("netns", "exec", self.name, "ip", "link", "set", self.inner_link, "up")
        _ip("neigh", "flush", "dev", self.host_link)
        _ip("netns", "exec", self.name, "ip", "neigh", "flush", "dev", self.inner_link)

    @property
    def is_cut(self) -> bool:
        out = _ip("netns", "exec", self.name, "ip", "-o", "link", "show", self.inner_link)
        flags = out.partition("<")[2].partition(">")[0].split(",")
        return "UP" not in flags


def available() -> str | None:
    """Why islands cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def create(name: str, subnet: int) -> Island:
    """A fresh island (one left behind by a crashed run under that name is removed first)."""
    if not 0 < len(name) <= MAX_NAME or not name.replace("-", "").isalnum():
        raise ValueError(f"an island's name is 1 to {MAX_NAME} letters, digits or '-': {name!r}")
    if not 0 <= subnet <= 255:
        raise ValueError(f"subnet must be 0 to 255: {subnet}")
    net = Island(name, subnet)
    remove(net)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", net.host_link, "type", "veth", "peer", "name", net.inner_link)
        _ip("link", "set", net.inner_link, "netns", name)
        _ip("addr", "add", f"{net.host_address}/30", "dev", net.host_link)
        _ip("link", "set", net.host_link, "up")
        inside = ("netns", "exec", name, "ip")
        _ip(*inside, "addr", "add", f"{net.inner_address}/30", "dev", net.inner_link)
        _ip(*inside, "link", "set", net.inner_link, "up")
        _ip(*inside, "link", "set", "lo", "up")
    except BaseException:
        remove(net)
        raise
    return net


def remove(net: Island) -> None:
    """Delete the namespace and the host's end of the pair (idempotent)."""
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "del", net.name)
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("link", "del", net.host_link)


@contextlib.contextmanager
def island(name: str, subnet: int) -> Iterator[Island]:
    """An island for the `with` block, removed afterwards (healed or not)."""
    net = create(name, subnet)
    try:
        yield net
    finally:
        remove(net)


def _ip(*args: str) -> str:
    command = ["ip", *args]  # iproute2 from PATH, like the engines' own programs
    done = subprocess.run(  # noqa: S603 - fixed program, our own arguments
        command,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
    return done.stdout
