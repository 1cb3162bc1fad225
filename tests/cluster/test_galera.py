"""The mesh on a real three-node MariaDB Galera cluster (mesh/cluster/galera.py).

Writers on different nodes really conflict (certification, error 1213 at COMMIT) and
the runtime runs the loser's whole transaction again; keyvault nonce blocks leased on two
nodes at once never overlap; every table of every service has a primary key; and the
mesh under a signed load loses and doubles nothing when one node is stopped.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asyncmy.errors import OperationalError, ProgrammingError

from contracts.audit import AuditAction, AuditOutcome, AuditType
from mesh import db, metrics
from mesh.audit import make_event
from mesh.cluster import galera
from mesh.migrations import apply_migrations
from mesh.settings import Settings
from services.audit import chain as audit_chain
from services.audit import store as audit_store
from services.audit.ingest import _Pending
from services.audit.ingest import append as ingest_append
from services.chat import store as chat_store
from services.keyvault import store as kv_store
from tests.cluster.galera_support import (
    RETRYABLE,
    Load,
    mesh_on_nodes,
    moves,
    on_node,
    patient_body,
)
from tests.gateway.support import Mesh
from tests.processes import ROOT
from tests.support.patients import patients_in
from tests.support.polling import until_sync

pytestmark = pytest.mark.timeout(180)

SERVICES = ["audit", "auth", "chat", "keyvault", "records", "scheduling"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[galera.Cluster]:
    # A short folder: each node's socket path must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="mh-galera-"))
    shutil.rmtree(base)
    nodes = galera.up(base)
    try:
        yield nodes
    finally:
        nodes.down()


def retries(database: str) -> float:
    return metrics.DB_RETRIES.labels(database)._value.get()  # type: ignore[no-any-return]


async def test_two_writers_on_two_nodes_conflict_and_the_loser_is_run_again(
    cluster: galera.Cluster, settings: Settings
) -> None:
    name = f"{settings.db_prefix}glrace"
    s0, s1 = on_node(settings, cluster, 0, only=True), on_node(settings, cluster, 1, only=True)
    await db.ensure_database(s0, name)
    await db.ensure_database(s1, name)  # a causal read there: node 1 has it too
    a, b = await db.Database.connect(s0, name), await db.Database.connect(s1, name)
    try:
        await a.execute("CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL)")
        await a.execute(
            "CREATE TABLE effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "writer CHAR(1) NOT NULL, round INT NOT NULL)"
        )
        await a.execute("INSERT INTO counter VALUES (1, 0)")
        assert await b.fetchone("SELECT n FROM counter WHERE id = 1") == (0,)  # causal read

        # One attempt each, both inside their transactions before either commits: Galera
        # lets the first COMMIT through and rolls the other back with 1213.
        both_in = asyncio.Barrier(2)

        async def once(database: db.Database, writer: str) -> None:
            async with database.transaction() as conn:
                await db.execute(conn, "UPDATE counter SET n = n + 1 WHERE id = 1")
                await db.execute(
                    conn, "INSERT INTO effects (writer, round) VALUES (%s, 1)", (writer,)
                )
                await both_in.wait()

        results = await asyncio.wait_for(
            asyncio.gather(once(a, "a"), once(b, "b"), return_exceptions=True), 60
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], OperationalError)
        assert errors[0].args[0] == db.DEADLOCK and db.is_retryable(errors[0])
        assert await a.fetchone("SELECT n FROM counter WHERE id = 1") == (1,)

        # The same race through `run`: the loser's whole transaction runs again.
        attempts: Counter[str] = Counter()
        both_in_again = asyncio.Barrier(2)
        before = retries(name)

        async def retried(database: db.Database, writer: str) -> None:
            async def work(conn: Any) -> None:
                attempts[writer] += 1
                await db.execute(conn, "UPDATE counter SET n = n + 1 WHERE id = 1")
                await db.execute(
                    conn, "INSERT INTO effects (writer, round) VALUES (%s, 2)", (writer,)
                )
                if attempts[writer] == 1:
                    await both_in_again.wait()

            await database.run(work)

        await asyncio.wait_for(asyncio.gather(retried(a, "a"), retried(b, "b")), 60)
        assert min(attempts.values()) == 1 and max(attempts.values()) >= 2, attempts
        assert retries(name) - before >= 1
        for database in (a, b):  # both effects, once each, seen from both nodes
            assert await database.fetchone("SELECT n FROM counter WHERE id = 1") == (3,)
            rows = await database.fetchall(
                "SELECT writer, COUNT(*) FROM effects WHERE round = 2 GROUP BY writer"
            )
            assert sorted(rows) == [("a", 1), ("b", 1)]
    finally:
        await a.close()
        await b.close()


async def test_nonce_leases_from_two_nodes_at_once_never_overlap(
    cluster: galera.Cluster, settings: Settings
) -> None:
    name = f"{settings.db_prefix}glnonces"
    s0, s1 = on_node(settings, cluster, 0, only=True), on_node(settings, cluster, 2, only=True)
    await db.ensure_database(s0, name)
    await apply_migrations(s0, name, ROOT / "services" / "keyvault" / "migrations")
    await db.ensure_database(s1, name)  # a causal read there: the other node has it too
    first, second = await db.Database.connect(s0, name), await db.Database.connect(s1, name)
    try:
        await first.execute(
            "INSERT INTO vault_keys (key_id, purpose, wrapped, nonce_prefix) "
            "VALUES (1, 'data', x'00', x'00000001')"
        )
        size, per_replica, concurrency = 1000, 40, 3
        before = retries(name)

        async def replica(database: db.Database, instance: str) -> list[int]:
            starts: list[int] = []

            async def lease() -> None:
                while len(starts) < per_replica:
                    starts.append(await kv_store.lease_counters(database, 1, size, instance))

            await asyncio.gather(*(lease() for _ in range(concurrency)))
            return starts

        got = await asyncio.wait_for(
            asyncio.gather(replica(first, "kv-node0"), replica(second, "kv-node2")), 120
        )
        starts = [s for replica_starts in got for s in replica_starts]
        # Each lease is a block [start, start + size): distinct starts on a grid of `size`
        # means no two blocks share a counter.
        assert len(starts) == len(set(starts)), "a block was leased twice"
        assert all(s % size == 0 for s in starts)
        assert sorted(starts) == list(range(0, len(starts) * size, size))
        stored = await second.fetchall(
            "SELECT start_counter, end_counter FROM nonce_leases WHERE key_id = 1 "
            "ORDER BY start_counter"
        )
        assert [(int(s), int(e)) for s, e in stored] == [(s, s + size) for s in sorted(starts)]
        mark = await first.fetchone("SELECT next_counter FROM vault_keys WHERE key_id = 1")
        assert mark == (len(starts) * size,)
        # The two nodes really raced (certification refused some leases, run again).
        assert retries(name) - before > 0
    finally:
        await first.close()
        await second.close()


async def test_audit_appends_from_two_nodes_at_once_keep_one_chain(
    cluster: galera.Cluster, settings: Settings
) -> None:
    """Two audit replicas on two nodes both read the chain head (its row lock holds on one
    node only) and both update it: certification commits one, the other is run again on
    the new head, so the chain stays one unbroken line."""
    name = f"{settings.db_prefix}glaudit"
    s0, s1 = on_node(settings, cluster, 0, only=True), on_node(settings, cluster, 1, only=True)
    await db.ensure_database(s0, name)
    await apply_migrations(s0, name, ROOT / "services" / "audit" / "migrations")
    await db.ensure_database(s1, name)  # a causal read there: the other node has it too
    first, second = await db.Database.connect(s0, name), await db.Database.connect(s1, name)
    before = retries(name)
    try:

        async def replica(database: db.Database, tag: str) -> int:
            runtime: Any = SimpleNamespace(db=database)
            new = 0
            for batch in range(25):
                events = [
                    make_event(
                        "records",
                        AuditType.patient_read,
                        AuditAction.read,
                        AuditOutcome.success,
                        entity_type="patient",
                        entity_id=f"{tag}-{batch}-{i}",
                    )
                    for i in range(3)
                ]
                added = await ingest_append(runtime, [_Pending(e, "records") for e in events])
                new += sum(added)
            return new

        added = await asyncio.wait_for(
            asyncio.gather(replica(first, "n0"), replica(second, "n1")), 120
        )
        assert list(added) == [75, 75]
        links = await audit_store.chain(second, 0, 1000)
        assert [link.entry.seq for link in links] == list(range(1, 151))
        previous = bytes(32)
        for link in links:
            assert link.prev_hash == previous
            assert link.hash == audit_chain.entry_hash(
                previous, link.entry.seq, link.entry.event, link.entry.publisher
            )
            previous = link.hash
        assert await audit_store.head(first) == (150, previous)
        assert len({link.entry.event.entity_id for link in links}) == 150
        assert retries(name) - before > 0  # the two nodes really raced for the head
    finally:
        await first.close()
        await second.close()


async def test_chat_message_ids_taken_on_two_nodes_at_once_stay_unique_and_gapless(
    cluster: galera.Cluster, settings: Settings
) -> None:
    name = f"{settings.db_prefix}glchat"
    # Six writers on one hot row across two nodes: on a loaded machine a writer can lose
    # certification more than the default 8 times in a row (CI saw it once). This test is
    # about the ids staying unique and gapless, not the retry bound, so it allows more.
    hot = settings.model_copy(update={"db_retry_attempts": 20})
    s0, s1 = on_node(hot, cluster, 1, only=True), on_node(hot, cluster, 2, only=True)
    await db.ensure_database(s0, name)
    await apply_migrations(s0, name, ROOT / "services" / "chat" / "migrations")
    await db.ensure_database(s1, name)  # a causal read there: the other node has it too
    first, second = await db.Database.connect(s0, name), await db.Database.connect(s1, name)
    before = retries(name)
    try:
        await first.execute("CREATE TABLE taken (message_id BIGINT PRIMARY KEY, node INT NOT NULL)")

        async def replica(database: db.Database, node: int) -> None:
            async def one(conn: Any) -> None:
                message_id = await chat_store.next_message_id(conn)
                await db.execute(conn, "INSERT INTO taken VALUES (%s, %s)", (message_id, node))

            async def sender() -> None:
                for _ in range(15):
                    await database.run(one)

            await asyncio.gather(*(sender() for _ in range(3)))

        await asyncio.wait_for(asyncio.gather(replica(first, 1), replica(second, 2)), 120)
        rows = await second.fetchall("SELECT message_id, node FROM taken ORDER BY message_id")
        assert [int(r[0]) for r in rows] == list(range(1, 91))  # unique, no gap
        assert {int(r[1]) for r in rows} == {1, 2}
        assert retries(name) - before > 0
    finally:
        await first.close()
        await second.close()


async def test_every_table_of_every_service_has_a_primary_key(
    cluster: galera.Cluster, settings: Settings
) -> None:
    """Galera replicates rows by primary key (a table without one is slow to apply and
    its rows cannot be certified): checked on the cluster after every migration."""
    s0 = on_node(settings, cluster, 1)
    prefix = f"{settings.db_prefix}glpk_"
    for service in SERVICES:
        await db.ensure_database(s0, prefix + service)
        await apply_migrations(s0, prefix + service, ROOT / "services" / service / "migrations")
    conn, _ = await db.connect_any(s0)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT t.table_schema, t.table_name FROM information_schema.tables t "
                "LEFT JOIN information_schema.table_constraints c "
                "ON c.table_schema = t.table_schema AND c.table_name = t.table_name "
                "AND c.constraint_type = 'PRIMARY KEY' "
                "WHERE t.table_schema LIKE %s AND t.table_type = 'BASE TABLE' "
                "AND c.constraint_name IS NULL",
                (prefix.replace("_", "\\_") + "%",),
            )
            missing = tuple(await cur.fetchall())
            await cur.execute(
                "SELECT COUNT(DISTINCT table_schema), COUNT(*) FROM information_schema.tables "
                "WHERE table_schema LIKE %s",
                (prefix.replace("_", "\\_") + "%",),
            )
            schemas, tables = await cur.fetchone()
            await cur.execute(
                "SELECT table_schema, table_name, engine FROM information_schema.tables "
                "WHERE table_schema LIKE %s AND engine <> 'InnoDB'",
                (prefix.replace("_", "\\_") + "%",),
            )
            not_innodb = tuple(await cur.fetchall())
    finally:
        conn.close()
    assert (schemas, missing, not_innodb) == (len(SERVICES), (), ())
    assert tables > 30


def test_nothing_relies_on_table_or_named_locks() -> None:
    """Galera replicates neither LOCK TABLES nor GET_LOCK: no code may serialise on them."""
    found = []
    for folder in ("mesh", "services", "gateway", "cli"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".sql"} or path.name == "test_galera.py":
                continue
            text = path.read_text(encoding="utf-8").upper()
            for word in ("LOCK TABLES", "GET_LOCK(", "LOCK TABLE "):
                if word in text:
                    found.append(f"{path.relative_to(ROOT)}: {word}")
    assert found == []


async def test_a_killed_node_leaves_a_primary_majority_and_rejoins_with_what_it_missed(
    cluster: galera.Cluster, settings: Settings
) -> None:
    name = f"{settings.db_prefix}glkill"
    s0 = on_node(settings, cluster, 0, only=True)
    await db.ensure_database(s0, name)
    first = await db.Database.connect(s0, name)
    try:
        await first.execute("CREATE TABLE seen (id INT PRIMARY KEY)")
        # Not while node 2 may still be applying that DDL: a kill right after it once
        # left the rejoined node without the table (see docs/clustering.md, not done).
        assert await asyncio.to_thread(
            until_sync, lambda: "seen" in cluster.sql(2, f"SHOW TABLES IN `{name}`"), 30
        )
        await asyncio.to_thread(cluster.kill, 2)  # kill -9: noticed by timeout, not a leave
        await asyncio.to_thread(cluster.wait_synced, 2, 60)
        await first.execute("INSERT INTO seen VALUES (1)")  # the majority takes writes
        await asyncio.to_thread(cluster.start, 2)  # rejoins: IST or SST from a donor
    finally:
        await first.close()
    await db.ensure_database(on_node(settings, cluster, 2, only=True), name)
    rejoined = await db.Database.connect(on_node(settings, cluster, 2, only=True), name)
    try:
        found = await rejoined.fetchall("SELECT id FROM seen")
    except ProgrammingError as exc:
        log = Path(cluster.nodes[2].log).read_text(errors="replace")[-4000:]
        raise AssertionError(f"the rejoined node misses the table: {exc}\n{log}") from exc
    finally:
        await rejoined.close()
    assert found == [(1,)]
    assert {cluster.status(n)["wsrep_cluster_size"] for n in range(3)} == {"3"}


# ------------------------------------------------------------------ the mesh, a node lost

MESH = [
    "services.keyvault",  # node 0 first
    "services.records",  # node 1 first: the one stopped
    "services.auth",  # node 2 first
    "services.audit",  # node 0 first
    "services.chat",  # node 1 first
]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_the_mesh_loses_and_doubles_nothing_when_a_node_stops(
    cluster: galera.Cluster, tmp_path: Path, how: str
) -> None:
    """`stop`: a clean shutdown (the node leaves the group); `kill`: SIGKILL (the others
    notice when it stops answering)."""
    # Each service prefers another node: writes really come from all three.
    prefers = {module: index % 3 for index, module in enumerate(MESH)}
    with mesh_on_nodes(f"galera{how}", cluster, tmp_path, prefers) as world:
        _load_with_a_node_stopped(world, cluster, how)


def _load_with_a_node_stopped(world: Mesh, cluster: galera.Cluster, how: str) -> None:
    admin, desk = world.admin(), world.staff("receptionist")
    load = Load(desk, "galera")
    tag = load.tag
    before = patients_in(world.settings)
    load.start()
    stopped_at = time.monotonic()
    getattr(cluster, how)(1)  # records and chat served from node 1: they move to node 2
    load.join(150)
    recovered_s = time.monotonic() - stopped_at
    assert not load.unexpected, load.unexpected
    survivors = on_node(world.settings, cluster, 2, only=True)
    stored = patients_in(survivors) - before
    ids = load.ids
    statuses = load.statuses
    lost, duplicated = load.lost(stored), load.duplicated(stored)
    answered = statuses[201]
    failed_cleanly = load.failed_cleanly
    audit_lost = load.audit_lost(admin)
    print(
        f"galera node {how}: answered={answered} failed_cleanly={failed_cleanly} "
        f"lost={lost} duplicated={duplicated} audit_lost={audit_lost} "
        f"statuses={dict(statuses)} load_after_stop_s={recovered_s:.1f}"
    )
    assert len(load.created) == load.total and len(ids) == load.total, statuses
    assert set(statuses) <= {201} | RETRYABLE, statuses
    assert (lost, duplicated, audit_lost) == (0, 0, 0)
    assert admin.client.get("/api/v1/audit/verify")["ok"]
    records = world.procs["services.records"]
    # (records has two pools on its database; each moves when it meets the loss)
    assert set(moves(records)) == {1}, "records did not move to the next node (its second)"
    # The node rejoins; the services, never restarted, move back to it and go on writing.
    cluster.start(1)
    assert until_sync(lambda: moves(records)[-1:] == [0], 30), moves(records)
    after = desk.client.request(
        "POST", "/api/v1/patients", patient_body(999, tag), idempotency_key=f"{tag}-after"
    )
    assert after.status_code == 201, after.text
    for name, proc in world.procs.items():
        assert proc.popen.poll() is None, f"{name} exited"
