"""mesh.cluster.netns: an island really is cut off (silently from the host, at once from
inside), comes back when healed, and leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mesh.cluster import netns

pytestmark = pytest.mark.timeout(60)

PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("ok")
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""


@pytest.fixture
def net() -> Iterator[netns.Island]:
    why = netns.available()
    if why:
        pytest.skip(why)
    with netns.island("mhtest-isl", 250) as island:
        yield island


def listen_inside(net: netns.Island) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        net.command([sys.executable, "-c", LISTENER, net.inner_address]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "listening"
    return server


LISTENER = """
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 9977)); s.listen(8); print("listening", flush=True)
while True:
    s.accept()
"""


def connect(host: str, port: int, timeout: float = 1.0) -> str:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "ok"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {exc.errno}"
    finally:
        s.close()


def connect_from_inside(net: netns.Island, host: str, port: int) -> str:
    done = subprocess.run(
        net.command([sys.executable, "-c", PROBE, host, str(port), "1"]),
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout.strip()


def test_a_cut_island_is_silent_from_the_host_and_unreachable_from_inside(
    net: netns.Island,
) -> None:
    server = listen_inside(net)
    host_side = socket.socket()
    host_side.bind((net.host_address, 0))
    host_side.listen(8)
    host_port = host_side.getsockname()[1]
    try:
        assert connect(net.inner_address, 9977) == "ok"
        assert connect_from_inside(net, net.host_address, host_port) == "ok"
        assert not net.is_cut

        net.cut()
        assert net.is_cut
        started = time.monotonic()
        assert connect(net.inner_address, 9977, timeout=1.0) == "timeout"  # dropped, not refused
        assert time.monotonic() - started >= 0.9
        assert connect_from_inside(net, net.host_address, host_port).startswith("OSError")
        # The host's own end stays a local address: nodes left on the host still meet there.
        assert connect(net.host_address, host_port) == "ok"

        net.heal()
        assert not net.is_cut
        assert connect(net.inner_address, 9977) == "ok"
        assert connect_from_inside(net, net.host_address, host_port) == "ok"
    finally:
        host_side.close()
        server.kill()
        server.wait(10)


def test_removing_an_island_leaves_no_namespace_or_link_and_a_stale_one_is_replaced() -> None:
    why = netns.available()
    if why:
        pytest.skip(why)
    first = netns.create("mhtest-isl2", 251)
    again = netns.create("mhtest-isl2", 251)  # a crashed run's island is replaced, not an error
    assert again == first
    netns.remove(again)
    netns.remove(again)  # idempotent
    assert (
        "mhtest-isl2"
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert (
        "mhtest-isl2"
        not in subprocess.run(
            ["ip", "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
    )


@pytest.mark.parametrize("name", ["", "much-too-long-name", "bad name", "semi;colon"])
def test_a_bad_island_name_is_refused_before_anything_is_made(name: str) -> None:
    with pytest.raises(ValueError, match="island's name"):
        netns.create(name, 1)
