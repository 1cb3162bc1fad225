"""Start real service processes (as `make run` does) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from mesh.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that points a child process at this test session's isolated resources."""
    env = dict(os.environ)
    env.update(
        {
            "MEDIHAVEN_AMQP_URL": settings.amqp_url.get_secret_value(),
            "MEDIHAVEN_AMQP_NODES": settings.amqp_nodes,
            "MEDIHAVEN_AMQP_USER_PREFIX": settings.amqp_user_prefix,
            "MEDIHAVEN_AMQP_SECRETS_DIR": str(settings.amqp_secrets_dir or ""),
            "MEDIHAVEN_DB_HOST": settings.db_host,
            "MEDIHAVEN_DB_PORT": str(settings.db_port),
            "MEDIHAVEN_DB_USER": settings.db_user,
            "MEDIHAVEN_DB_PASSWORD": settings.db_password.get_secret_value(),
            "MEDIHAVEN_DB_PREFIX": settings.db_prefix,
            "MEDIHAVEN_REDIS_URL": settings.redis_url.get_secret_value(),
            "MEDIHAVEN_REDIS_PREFIX": settings.redis_prefix,
            "MEDIHAVEN_LOG_FORMAT": "json",
            "MEDIHAVEN_ATTENDANCE_REQUIRED": str(settings.attendance_enforced).lower(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Process:
    """One running `python -m <module>` with its own HTTP port and log file."""

    def __init__(self, module: str, settings: Settings, log_dir: Path, **env: str) -> None:
        self.module = module
        self.port = free_port()
        self.log_path = log_dir / f"{module.replace('.', '_')}-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=process_env(settings, MEDIHAVEN_HTTP_PORT=str(self.port), **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.module} not ready in {timeout} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return int(self.popen.returncode)


@contextmanager
def running(
    modules: Sequence[str], settings: Settings, log_dir: Path, **env: str
) -> Iterator[dict[str, Process]]:
    """Start the modules, wait until each is ready, stop them all afterwards."""
    with started(modules, settings, log_dir, env) as procs:
        yield procs


@contextmanager
def started(
    modules: Sequence[str],
    settings: Settings,
    log_dir: Path,
    env: Mapping[str, str],
    ready_timeout_s: float = 30.0,
) -> Iterator[dict[str, Process]]:
    """`running`, with the environment as a mapping and a readiness bound of one's own."""
    procs: dict[str, Process] = {}
    try:
        for module in modules:
            procs[module] = Process(module, settings, log_dir, **env)
        for proc in procs.values():
            proc.wait_ready(ready_timeout_s)
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()
