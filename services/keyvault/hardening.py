"""Process hardening for the keyvault: no core dumps, not ptrace-able, memory locked.

Best effort, each step logged: where the platform refuses one (no CAP_IPC_LOCK, a low
RLIMIT_MEMLOCK, not Linux), the keyvault still runs and says what it could not do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys

from mesh.logging import get_logger

log = get_logger("keyvault.hardening")

PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2


def harden_process(lock_memory: bool = True) -> list[str]:
    """Apply what the platform allows; returns the steps that could not be applied."""
    missing: list[str] = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        missing.append(f"core dumps not disabled ({exc})")
    if not sys.platform.startswith("linux"):
        missing.append("prctl and mlockall are Linux-only")
        return _report(missing)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        missing.append(f"PR_SET_DUMPABLE=0 failed (errno {ctypes.get_errno()})")
    if lock_memory:
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        # With a finite RLIMIT_MEMLOCK, MCL_FUTURE would make later allocations fail:
        # lock memory only where the limit does not apply (unlimited, or root).
        if soft == resource.RLIM_INFINITY or os.geteuid() == 0:
            if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
                missing.append(f"mlockall failed (errno {ctypes.get_errno()})")
        else:
            missing.append("memory not locked: RLIMIT_MEMLOCK is finite and not running as root")
    return _report(missing)


def _report(missing: list[str]) -> list[str]:
    if missing:
        log.warning("keyvault.hardening_incomplete", missing=missing)
    else:
        log.info("keyvault.hardened", steps=["no core dumps", "not dumpable", "mlockall"])
    return missing
