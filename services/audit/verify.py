"""Verifying the hash chain: from the last verified mark (seconds, whatever its size), and
the whole chain in the background.

A walk recomputes every entry's hash from its fields and its predecessor, checks the
sequence has no gap and that every keyvault-MAC'd checkpoint on the way agrees (a
consistent rewrite of the chain, which needs no key, still contradicts one). A walk that
reaches the head ends with a verified mark: (seq, hash) MAC'd by the keyvault. The next
verification starts there: the mark's MAC and the entry it names are checked, then only
the entries after it are walked. The full walk (`audit.verify_full`) starts from the
first entry, in pages, under a lease that another replica takes over if this one dies,
and resumes from its cursor; it never runs inside an RPC's deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import audit
from contracts import keyvault as kv
from mesh import keyvault
from mesh.db import Connection
from mesh.errors import RpcError
from mesh.logging import get_logger
from mesh.runtime import Runtime, service_state
from services.audit import chain, store

log = get_logger("audit.verification")
PAGE = 2000
TAIL_LIMIT = 100_000
"""Entries one verification call walks at most (it then marks where it stopped)."""
WALK_STEP = 20_000
"""Entries a full walk checks between saving its cursor."""
LEASE_S = 30.0
BACKGROUND_EVERY_S = 30.0
"""How often each replica verifies the new entries (keeps the marks close to the head)."""
MAC_BATCH = kv.MAX_ROWS


def mark_row(seq: int, digest: bytes) -> kv.MacRow:
    return kv.MacRow(table=chain.HEAD_TABLE, pk=f"verified:{seq}", columns=[("hash", digest.hex())])


@dataclass
class Walked:
    ok: bool
    entries: int
    last_seq: int
    last_hash: bytes
    first_bad_seq: int | None = None
    problem: str | None = None
    reached_head: bool = False


async def _valid_macs(runtime: Runtime, rows: list[kv.MacRow], tags: list[str]) -> list[bool]:
    valid: list[bool] = []
    for i in range(0, len(rows), MAC_BATCH):
        valid += await keyvault.verify_macs(
            runtime, rows[i : i + MAC_BATCH], tags[i : i + MAC_BATCH]
        )
    return valid


async def checkpoints_after(runtime: Runtime, seq: int) -> dict[int, tuple[bytes, bool]]:
    """The checkpoints after `seq`, each with whether its MAC verifies."""
    assert runtime.db is not None
    marks = [m for m in await store.checkpoints(runtime.db) if m[0] > seq]
    rows = [chain.head_mac_row(s, h) for s, h, _ in marks]
    valid = await _valid_macs(runtime, rows, [mac for _, _, mac in marks])
    return {s: (h, ok) for (s, h, _), ok in zip(marks, valid, strict=True)}


async def walk(
    runtime: Runtime,
    after_seq: int,
    prev: bytes,
    limit: int,
    checkpoints: dict[int, tuple[bytes, bool]],
) -> Walked:
    """Walk at most `limit` entries after `after_seq` (whose hash is `prev`), up to the
    head as it was when the walk began (entries appended meanwhile are the next walk's)."""
    database = runtime.db
    assert database is not None
    head_seq, head_hash = await store.head(database)
    target = min(head_seq, after_seq + limit)
    expected, count = after_seq + 1, 0

    def bad(seq: int, problem: str) -> Walked:
        log.error("audit.chain_broken", seq=seq, problem=problem)
        return Walked(False, count, expected - 1, prev, seq, problem)

    if after_seq > head_seq:
        return bad(head_seq + 1, f"entry {after_seq} lies beyond the chain head: rewritten")
    while expected <= target:
        links = await store.chain(database, expected - 1, min(PAGE, target - expected + 1))
        if not links:
            return bad(expected, f"entries {expected}..{target} are missing: deleted")
        for link in links:
            seq = link.entry.seq
            if seq != expected:
                return bad(expected, f"entry {expected} is missing: deleted")
            if link.prev_hash != prev:
                return bad(seq, "its previous-entry hash does not match: inserted or reordered")
            digest = chain.entry_hash(prev, seq, link.entry.event, link.entry.publisher)
            if digest != link.hash:
                return bad(seq, "its content does not match its hash: edited")
            if seq in checkpoints:
                mark_hash, mac_ok = checkpoints[seq]
                if not mac_ok:
                    return bad(seq, "the checkpoint MAC at this entry is invalid: forged")
                if mark_hash != link.hash:
                    return bad(seq, "the chain disagrees with the MAC'd checkpoint: rewritten")
            prev, expected, count = link.hash, expected + 1, count + 1
    if target < head_seq:
        return Walked(True, count, target, prev)
    if prev != head_hash:
        return bad(head_seq, "the chain head disagrees with its last entry: rewritten")
    # An append moves the head in its own transaction: a committed entry beyond the
    # committed head was put there by someone else.
    beyond = await store.entry_beyond_head(database)
    if beyond is not None:
        return bad(beyond, f"entry {beyond} lies beyond the chain head: inserted")
    for seq in checkpoints:
        if seq > head_seq and await store.entry_hash_at(database, seq) is None:
            return bad(head_seq + 1, f"entries up to checkpoint {seq} are missing: deleted")
    return Walked(True, count, head_seq, prev, reached_head=True)


async def _mark(runtime: Runtime, seq: int, digest: bytes) -> None:
    assert runtime.db is not None
    if seq == 0:
        return
    (tag,) = await keyvault.mac(runtime, [mark_row(seq, digest)])
    await store.add_mark(runtime.db, seq, digest, tag)


async def _start(runtime: Runtime) -> tuple[int, bytes, str | None]:
    """Where a verification starts: the last mark if it holds, else the first entry.
    Returns (seq, hash, problem): a problem means the mark itself was tampered with."""
    assert runtime.db is not None
    mark = await store.last_mark(runtime.db)
    if mark is None:
        return 0, chain.GENESIS, None
    seq, digest, tag = mark
    (valid,) = await _valid_macs(runtime, [mark_row(seq, digest)], [tag])
    if not valid:
        return seq, digest, "the verified mark's MAC is invalid: forged"
    if await store.entry_hash_at(runtime.db, seq) != digest:
        return seq, digest, "the entry a verified mark names was changed since: rewritten"
    return seq, digest, None


async def verify_since_mark(runtime: Runtime, limit: int = TAIL_LIMIT) -> audit.VerifyReply:
    """The chain from the last verified mark on (at most `limit` entries), marked again."""
    assert runtime.db is not None
    since, prev, problem = await _start(runtime)
    head_seq, _ = await store.head(runtime.db)
    latest = await latest_walk(runtime)
    if problem is not None:
        return audit.VerifyReply(
            ok=False,
            entries=0,
            checkpoints=0,
            since_seq=since,
            head_seq=head_seq,
            first_bad_seq=since,
            problem=problem,
            last_full=latest,
        )
    return await _walk_marked(
        runtime, since, prev, limit, head_seq, since_seq=since, last_full=latest
    )


async def verify_chain(runtime: Runtime) -> audit.VerifyReply:
    """The whole chain from its first entry, now (tests and the background walk's pages)."""
    return await _walk_marked(runtime, 0, chain.GENESIS, 2**62, 0)


async def _walk_marked(
    runtime: Runtime, since: int, prev: bytes, limit: int, head_seq: int, **more: Any
) -> audit.VerifyReply:
    """Walk at most `limit` entries after `since` (whose hash is `prev`); a walk that holds
    moves the verified mark to its end. The head is the walk's last entry, or `head_seq`
    read before it if later (the walk reads the head again: entries appended since were
    walked)."""
    checkpoints = await checkpoints_after(runtime, since)
    walked = await walk(runtime, since, prev, limit, checkpoints)
    if walked.ok:
        await _mark(runtime, walked.last_seq, walked.last_hash)
    return audit.VerifyReply(
        ok=walked.ok,
        entries=walked.entries,
        checkpoints=len(checkpoints),
        head_seq=max(head_seq, walked.last_seq),
        first_bad_seq=walked.first_bad_seq,
        problem=walked.problem,
        **more,
    )


# ---------------------------------------------------------------------------- full walks


def _walk(row: tuple[object, ...]) -> audit.FullVerification:
    def at(value: object) -> datetime | None:
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) else None

    started = at(row[7])
    assert started is not None
    return audit.FullVerification(
        walk_id=int(row[0]),  # type: ignore[call-overload]
        state=audit.FullVerificationState(str(row[1])),
        total=int(row[2]),  # type: ignore[call-overload]
        checked=int(row[3]),  # type: ignore[call-overload]
        started_by=None if row[6] is None else str(row[6]),
        started_at=started,
        finished_at=at(row[8]),
        first_bad_seq=None if row[9] is None else int(row[9]),  # type: ignore[call-overload]
        problem=None if row[10] is None else str(row[10]),
    )


async def latest_walk(runtime: Runtime) -> audit.FullVerification | None:
    assert runtime.db is not None
    row = await store.latest_walk(runtime.db)
    return None if row is None else _walk(row)


async def start_full(conn: Connection, started_by: str | None) -> audit.FullVerification:
    """Begin a full walk, or join the one running (in the caller's transaction)."""
    running = await store.running_walk(conn)
    if running is None:
        total = await store.head_seq(conn)
        walk_id = await store.start_walk(conn, total, started_by)
        running = await store.get_walk(conn, walk_id)
    assert running is not None
    return _walk(running)


async def _claim(runtime: Runtime) -> tuple[int, int, bytes, int] | None:
    """A running walk this replica may advance (its lease, or a lapsed one): (walk id,
    cursor seq, cursor hash, checked)."""
    assert runtime.db is not None
    now = datetime.now(UTC).replace(tzinfo=None)
    until = now + timedelta(seconds=LEASE_S)
    async for attempt in runtime.db.transactions():
        async with attempt as conn:
            claimed = await store.claimable_walk(conn, runtime.instance, now)
            if claimed is None:
                return None
            await store.lease_walk(conn, claimed[0], runtime.instance, until)
    assert claimed is not None  # the attempt that committed found a walk
    return claimed


async def advance_walks(runtime: Runtime) -> bool:
    """Advance a running full walk by one step; False when there is none to advance."""
    assert runtime.db is not None
    claimed = await _claim(runtime)
    if claimed is None:
        return False
    walk_id, cursor, prev, checked = claimed
    checkpoints = await checkpoints_after(runtime, cursor)
    walked = await walk(runtime, cursor, prev, WALK_STEP, checkpoints)
    checked += walked.entries
    if not walked.ok:
        await store.finish_walk(runtime.db, walk_id, checked, walked.first_bad_seq, walked.problem)
    elif walked.reached_head:
        await store.finish_walk(runtime.db, walk_id, checked, None, None)
        await _mark(runtime, walked.last_seq, walked.last_hash)
    else:
        await store.walk_progress(runtime.db, walk_id, checked, walked.last_seq, walked.last_hash)
    return True


@dataclass
class AuditState:
    """What an audit process holds beside its runtime (`service_state`)."""

    verify_wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to start the background walk at once (a full verification was asked for)."""


def state_of(runtime: Runtime) -> AuditState:
    return service_state(runtime, AuditState)


async def background(runtime: Runtime) -> None:
    """Each replica: advance full walks as soon as there are any, and verify the new
    entries every BACKGROUND_EVERY_S (so a verification call has little left to walk)."""
    wake = state_of(runtime).verify_wake
    last_tail = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            while await advance_walks(runtime):
                pass
            if loop.time() - last_tail >= BACKGROUND_EVERY_S:
                last_tail = loop.time()
                await verify_since_mark(runtime)
        except RpcError as exc:  # e.g. the keyvault is sealed: try again later
            log.warning("audit.verify_skipped", reason=exc.message)
        except Exception as exc:
            log.warning("audit.verify_failed", error=str(exc))
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), 2.0)
        except TimeoutError:
            pass
