"""mesh/cache.py: an entry is answered until its lifetime ends and never after, putting
again starts a fresh lifetime, and beyond the limit the least recently put go first.

The cache reads the monotonic clock itself (no clock to inject), so expiry is watched
with short lifetimes and polling, never a fixed sleep."""

from __future__ import annotations

import time

from mesh.cache import TtlCache
from tests.support.polling import until

SHORT_S = 0.05


async def test_an_entry_is_answered_within_its_lifetime_and_gone_after() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    cache.put("a", 1)
    assert cache.get("a") == 1
    short: TtlCache[str, int] = TtlCache(SHORT_S)
    put_at = time.monotonic()
    short.put("a", 1)
    await until(lambda: short.get("a") is None, timeout=2)
    assert time.monotonic() - put_at >= SHORT_S
    assert len(short) == 0  # an expired entry is dropped, not kept


def test_a_lifetime_of_zero_caches_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None


async def test_putting_again_starts_a_fresh_lifetime() -> None:
    cache: TtlCache[str, int] = TtlCache(1.0)
    cache.put("a", 1)
    first = time.monotonic()
    await until(lambda: time.monotonic() - first >= 0.5, timeout=3, interval=0.01)
    cache.put("a", 2)
    again = time.monotonic()
    await until(lambda: time.monotonic() - first >= 1.1, timeout=3, interval=0.01)
    assert cache.get("a") == 2  # the first lifetime is over, the second is not
    await until(lambda: cache.get("a") is None, timeout=3)
    assert time.monotonic() - again >= 1.0


def test_beyond_the_limit_the_least_recently_put_go_first() -> None:
    cache: TtlCache[str, int] = TtlCache(60, limit=3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    cache.put("a", 10)  # refreshed: now the newest
    cache.put("d", 3)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [10, 2, 3]
    assert len(cache) == 3


def test_forget_and_clear_drop_entries_at_once() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.forget("a")
    cache.forget("never there")
    assert cache.get("a") is None and cache.get("b") == 2
    cache.clear()
    assert cache.get("b") is None and len(cache) == 0
