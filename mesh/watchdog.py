"""Keep a consumer consuming, whatever happened to its queue on the broker.

aio-pika's robust channel restores a consumer the broker cancelled (its queue deleted,
its queue's node lost) by declaring the queue again and consuming anew. A CI run still
saw a service whose request queue was gone from the cluster 30 s after a node was
killed, with the service connected and nobody to declare it. Rather than depend on
that one recovery path, each consumer asks the broker itself, every few seconds,
whether it is still consuming, and, after two answers in a row that it is not, renews
its channel, queues and consumers. A check is skipped while the connection is down:
then the robust connection's own reconnection is at work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mesh.logging import get_logger

log = get_logger("mesh.watchdog")

WATCH_INTERVAL_S = 2.0
"""How often a consumer checks itself (one channel open, declare and close on the broker)."""
RENEWAL_TIMEOUT_S = 10.0
"""How long one renewal may take before it counts as failed (tried again next check)."""
STOP_TIMEOUT_S = 2.0
"""How long stopping waits for a watchdog to end (a check or renewal it interrupts may
be waiting on the broker); after that the runtime goes on stopping without it."""
MISSES_BEFORE_RENEWAL = 2
"""Answers in a row that it is not consuming before a consumer renews itself: the first
one may come while aio-pika's own recovery is still at work."""


async def keep_consuming(
    name: str,
    *,
    connected: Callable[[], bool],
    consuming: Callable[[], Awaitable[bool]],
    renew: Callable[[], Awaitable[None]],
    interval_s: float = WATCH_INTERVAL_S,
    misses: int = MISSES_BEFORE_RENEWAL,
) -> None:
    """Run until cancelled: check `consuming()` every `interval_s` while `connected()`,
    and `renew()` after `misses` checks in a row answered no (or failed)."""
    missed = 0
    while True:
        await asyncio.sleep(interval_s)
        if not connected():
            missed = 0
            continue
        try:
            ok = await asyncio.wait_for(consuming(), interval_s * 2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a check that cannot be made counts as a no
            log.info("watchdog.check_failed", consumer=name, error=f"{type(exc).__name__}: {exc}")
            ok = False
        missed = 0 if ok else missed + 1
        if missed < misses:
            continue
        log.warning("watchdog.renewing", consumer=name, missed=missed)
        try:
            await asyncio.wait_for(renew(), max(RENEWAL_TIMEOUT_S, interval_s * 5))
            missed = 0
            log.warning("watchdog.renewed", consumer=name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # tried again at the next check
            log.warning(
                "watchdog.renewal_failed", consumer=name, error=f"{type(exc).__name__}: {exc}"
            )


async def stop(task: asyncio.Task[None] | None, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel a watchdog task and wait for it to end, for `timeout_s` at most: stopping
    a service never hangs on its watchdog."""
    if task is None:
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("watchdog.stop_timeout", task=task.get_name(), timeout_s=timeout_s)
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
