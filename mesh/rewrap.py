"""Online rewrap, written once: each service declares its encrypted and MAC'd tables, the
mesh moves every row to the keyvault's active keys while the clinic works.

A service declares its tables in `services/<name>/rewrap.py` (primary key, encrypted
columns, how each row's keyvault context and binding are made, the MAC'd columns and
their canonical form, the blind-index columns) and serves them with
`RewrapJob(...).serve(router)`. The mesh then, in that service's own database:

- polls the keyvault for an administrator's rewrap run (`keyvault.rewrap_job`) and, on
  one replica at a time (a lease renewed in every batch's transaction, taken over when it
  lapses), walks each table in primary-key order in small batches: a plain read, one
  `keyvault.rewrap` call (ciphertext in, ciphertext out: the service never sees
  plaintext, and no lock is held while the keyvault works), then one short transaction
  that locks the batch's rows, keeps every row a user changed meanwhile as the user left
  it (compared column by column with what was read), writes the new ciphertexts, tag and
  tokens, and moves the persisted cursor — so a `kill -9` anywhere resumes exactly where
  the last commit left off, and nothing is done twice;
- throttles itself (rows per second, per service) and repeats passes until one finds
  nothing to do (a row written meanwhile under a key retired just before is caught by
  the next pass); rows that cannot be moved are reported, never dropped;
- reports progress to the keyvault (`keyvault.rewrap_report`) and as Prometheus metrics;
- answers `<service>.key_usage` (a fresh scan: fields and tags per key), which the keyvault
  asks before it destroys a key.

SQL is made here from the declaration; identifiers are checked to be plain names.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal, TypeVar

from asyncmy.errors import IntegrityError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from contracts import keyvault as kv
from contracts.base import RpcMethod
from contracts.rewrap import KEY_USAGE
from contracts.rows import MacRow
from mesh import db
from mesh.context import CallContext
from mesh.db import Sql
from mesh.errors import RpcError, Unavailable
from mesh.logging import get_logger
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime

log = get_logger("mesh.rewrap")
ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)

ROWS = Counter(
    "medihaven_rewrap_rows_total",
    "Rows a rewrap pass looked at, by service, table and outcome "
    "(rewrapped, current, changed by a user meanwhile, failed).",
    ["service", "table", "outcome"],
)
FIELDS = Counter(
    "medihaven_rewrap_fields_total", "Fields rewrapped, by service and table.", ["service", "table"]
)
MACS = Counter(
    "medihaven_rewrap_macs_total",
    "Row MACs made again, by service and table.",
    ["service", "table"],
)
TOKENS = Counter(
    "medihaven_rewrap_tokens_total",
    "Rows whose blind indexes were rewritten, by service and table.",
    ["service", "table"],
)
REMAINING = Gauge(
    "medihaven_rewrap_remaining_rows",
    "Rows left in the current pass, by service and table.",
    ["service", "table"],
)
PASS = Gauge("medihaven_rewrap_pass", "The pass a table is in.", ["service", "table"])
BATCH_SECONDS = Histogram(
    "medihaven_rewrap_batch_seconds",
    "Time per rewrap batch (read, keyvault, write), by service.",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

POLL_S = 2.0
"""How often an idle service asks the keyvault whether a run is on."""
REPORT_S = 0.5
"""At most this often a working service reports its progress."""
SCAN_PAGE = 1000
FIELD_HEADER = 5
"""A field ciphertext and a MAC tag start with version (1 byte) ‖ key id (4 bytes)
(`services/keyvault/ciphers.py`): enough for a service to see which key a value is under."""
LEASE = "rewrap"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _ident(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain SQL name")
    return f"`{name}`"


def header(value: str | None) -> tuple[int, int] | None:
    """(version, key id) of a stored ciphertext or MAC tag, or None if it is malformed."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value[:12], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < FIELD_HEADER:
        return None
    return raw[0], int.from_bytes(raw[1:5], "big")


# ---------------------------------------------------------------------------- declaration

Form = Literal["raw", "iso", "str", "hex"]
"""How a column's value enters the canonical MAC row: as stored (text, integer, NULL),
ISO 8601 in UTC with microseconds (DATETIME), as text (a number), hex (binary)."""


@dataclass(frozen=True)
class Col:
    """One column of a MAC'd row's canonical form, in order."""

    name: str
    form: Form = "raw"
    omit_null: bool = False
    """Left out of the canonical row when NULL (a column added later: older MACs verify)."""

    def value(self, stored: Any) -> str | int | None:
        if stored is None:
            return None
        if self.form == "iso":
            stamp = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
            return str(stamp.astimezone(UTC).isoformat(timespec="microseconds"))
        if self.form == "str":
            return str(stored)
        if self.form == "hex":
            return bytes(stored).hex()
        if isinstance(stored, bytes | bytearray):
            return bytes(stored).decode()
        if isinstance(stored, bool):
            return int(stored)
        if isinstance(stored, int | str):
            return stored
        return str(stored)


@dataclass(frozen=True)
class Mac:
    """The row's MAC: the column holding the tag, and the canonical row it covers (the
    same columns, order and forms the service uses when it MACs the row)."""

    column: str
    covers: tuple[Col, ...]


@dataclass(frozen=True)
class SideTable:
    """A blind index kept as rows of another table: (token, key) pairs, e.g. the sounds
    of a patient's name in `patient_sounds (token, patient_id)`."""

    table: str
    key: str
    token: str = "token"  # noqa: S105 - a column name
    row_column: str | None = None
    """The column of the main table whose value is `key` (default: the same name)."""

    @property
    def source(self) -> str:
        return self.row_column or self.key


@dataclass(frozen=True)
class Table:
    """One table of the service whose rows hold keyvault ciphertext or MACs."""

    name: str
    pk: tuple[str, ...]
    encrypted: Mapping[str, str] | Sequence[str] = ()
    """Encrypted columns: column -> field name in the keyvault context (a sequence:
    the field is the column's name without `_enc`)."""
    binding: Mapping[str, str] = field(default_factory=dict)
    """Binding name (patient, physician, conversation) -> the column holding it."""
    row_id: str | None = None
    """The keyvault context's row id: a column, or a template of columns
    ("{encounter_id}.v{version}"); default: the single primary-key column."""
    vault_table: str | None = None
    """The table name in the keyvault context and MAC (default: `name`)."""
    mac: Mac | None = None
    indexes: Mapping[str, str | SideTable] = field(default_factory=dict)
    """Blind index (its name in `contracts.keyvault.BLIND_INDEXES`) -> the column (or the
    side table) that stores its token(s)."""

    @property
    def logical(self) -> str:
        return self.vault_table or self.name

    @property
    def fields(self) -> dict[str, str]:
        if isinstance(self.encrypted, Mapping):
            return dict(self.encrypted)
        return {c: c.removesuffix("_enc") for c in self.encrypted}

    def check(self, service: str) -> None:
        """A declaration that cannot work is refused when the service starts."""
        names = [self.name, *self.pk, *self.fields, *self.binding.values()]
        names += [c.name for c in self.mac.covers] + [self.mac.column] if self.mac else []
        for name in names:
            _ident(name)
        if kv.TABLE_OWNERS.get(self.logical) != service:
            raise ValueError(f"{self.logical} is not a keyvault table of {service}")
        if self.row_id is None and len(self.pk) != 1:
            raise ValueError(f"{self.name}: a composite key needs a row_id template")
        specs = {s.name for s in kv.BLIND_INDEXES.get(self.logical, ())}
        if set(self.indexes) - specs:
            raise ValueError(f"{self.name}: no blind indexes {set(self.indexes) - specs}")
        if self.mac is not None:
            covered = {c.name for c in self.mac.covers}
            if set(self.fields) - covered:
                raise ValueError(f"{self.name}: every encrypted column must be in the MAC")
            for column in self.binding.values():
                if column not in covered and column not in self.pk:
                    raise ValueError(f"{self.name}: the binding {column} is not MAC'd")

    # -- SQL, made from the declaration

    @property
    def columns(self) -> list[str]:
        """Every column a batch reads (and compares before it writes), pk first."""
        wanted = [*self.pk, *self._row_id_columns(), *self.binding.values(), *self.fields]
        if self.mac is not None:
            wanted += [c.name for c in self.mac.covers] + [self.mac.column]
        wanted += [c for c in self.indexes.values() if isinstance(c, str)]
        wanted += [c.source for c in self.indexes.values() if isinstance(c, SideTable)]
        return list(dict.fromkeys(wanted))

    def _row_id_columns(self) -> list[str]:
        if self.row_id is None:
            return []
        if "{" in self.row_id:
            return re.findall(r"\{([a-z_][a-z0-9_]*)\}", self.row_id)
        return [self.row_id]

    def select_after(self, has_cursor: bool) -> str:
        cols = ", ".join(map(_ident, self.columns))
        order = ", ".join(map(_ident, self.pk))
        where = f" WHERE {self._after()}" if has_cursor else ""
        return f"SELECT {cols} FROM {_ident(self.name)}{where} ORDER BY {order} LIMIT %s"  # noqa: S608

    def _after(self) -> str:
        """Rows after the cursor in key order, as ORs of equalities and one `>` (an
        index range MariaDB uses, unlike a row-value comparison)."""
        parts = []
        for i in range(len(self.pk)):
            equal = [f"{_ident(c)} = %s" for c in self.pk[:i]]
            parts.append("(" + " AND ".join([*equal, f"{_ident(self.pk[i])} > %s"]) + ")")
        return " OR ".join(parts)

    def after_args(self, cursor: Sequence[Any]) -> list[Any]:
        args: list[Any] = []
        for i in range(len(self.pk)):
            args += [*cursor[:i], cursor[i]]
        return args

    def lock(self, count: int) -> str:
        cols = ", ".join(map(_ident, self.columns))
        one = "(" + " AND ".join(f"{_ident(c)} = %s" for c in self.pk) + ")"
        return (
            f"SELECT {cols} FROM {_ident(self.name)} WHERE "  # noqa: S608
            + " OR ".join([one] * count)
            + " FOR UPDATE"
        )

    def update(self, columns: Sequence[str]) -> str:
        sets = ", ".join(f"{_ident(c)} = %s" for c in columns)
        where = " AND ".join(f"{_ident(c)} = %s" for c in self.pk)
        return f"UPDATE {_ident(self.name)} SET {sets} WHERE {where}"  # noqa: S608

    def count(self) -> str:
        return f"SELECT COUNT(*) FROM {_ident(self.name)}"  # noqa: S608

    # -- a row's keyvault request

    def key_of(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[c] for c in self.pk)

    def context_row_id(self, row: Mapping[str, Any]) -> str:
        if self.row_id is None:
            return str(row[self.pk[0]])
        if "{" in self.row_id:
            return self.row_id.format(**{c: row[c] for c in self._row_id_columns()})
        return str(row[self.row_id])

    def mac_row(self, row: Mapping[str, Any]) -> MacRow:
        assert self.mac is not None
        columns = [
            (c.name, c.value(row[c.name]))
            for c in self.mac.covers
            if not (c.omit_null and row[c.name] is None)
        ]
        pk = self.pk[0] if len(self.pk) == 1 else None
        return MacRow(
            table=self.logical, pk=str(row[pk]) if pk else self.context_row_id(row), columns=columns
        )

    def request(self, row: Mapping[str, Any], reindex: bool) -> kv.RewrapRow:
        fields = {f: str(row[c]) for c, f in self.fields.items() if row[c] is not None}
        binding = {name: str(row[c]) for name, c in self.binding.items()}
        mac = None
        if self.mac is not None:
            covered = {c.name for c in self.mac.covers}
            mac = kv.RewrapMac(
                row=self.mac_row(row),
                tag=str(row[self.mac.column] or ""),
                columns={f: c for c, f in self.fields.items() if row[c] is not None},
                binding_columns={
                    name: c if c in covered else kv.MAC_PK for name, c in self.binding.items()
                },
            )
        return kv.RewrapRow(
            table=self.logical,
            row_id=self.context_row_id(row),
            binding=binding,
            fields=fields,
            mac=mac,
            reindex=reindex and bool(self.indexes),
        )


# ---------------------------------------------------------------------------- the job


class LeaseLost(Exception):
    """Another replica holds the job now (this one was too slow, or presumed dead)."""


class RunEnded(Exception):
    """The run was cancelled or another one started."""


@dataclass
class Cursor:
    """One table's persisted position and counters in one run (`mesh_rewrap_cursors`)."""

    pass_number: int = 1
    last_pk: list[Any] | None = None
    rows_total: int = 0
    rows_scanned: int = 0
    rows_rewrapped: int = 0
    fields_rewrapped: int = 0
    macs_rewrapped: int = 0
    tokens_rewritten: int = 0
    rows_changed: int = 0
    rows_failed: int = 0
    pass_work: int = 0
    pass_usage: dict[int, int] = field(default_factory=dict)
    pass_versions: dict[int, int] = field(default_factory=dict)
    final_usage: dict[int, int] | None = None
    final_versions: dict[int, int] | None = None
    seconds: float = 0.0
    done: bool = False

    def progress(self, table: str) -> kv.TableProgress:
        usage = self.final_usage if self.done and self.final_usage is not None else self.pass_usage
        versions = (
            self.final_versions
            if self.done and self.final_versions is not None
            else self.pass_versions
        )
        return kv.TableProgress(
            table=table,
            pass_number=self.pass_number,
            rows_total=self.rows_total,
            rows_scanned=self.rows_total if self.done else self.rows_scanned,
            rows_rewrapped=self.rows_rewrapped,
            fields_rewrapped=self.fields_rewrapped,
            macs_rewrapped=self.macs_rewrapped,
            tokens_rewritten=self.tokens_rewritten,
            rows_changed=self.rows_changed,
            rows_failed=self.rows_failed,
            usage=usage,
            versions=versions,
            seconds=self.seconds,
            done=self.done,
        )


_CURSOR_COLUMNS = (
    "pass_number, last_pk, rows_total, rows_scanned, rows_rewrapped, fields_rewrapped, "
    "macs_rewrapped, tokens_rewritten, rows_changed, rows_failed, pass_work, pass_usage, "
    "pass_versions, final_usage, final_versions, seconds, done"
)


def _counts(text: str | None) -> dict[int, int] | None:
    if text is None:
        return None
    return {int(k): int(v) for k, v in json.loads(text).items()}


_COUNTERS = (
    "rows_total",
    "rows_scanned",
    "rows_rewrapped",
    "fields_rewrapped",
    "macs_rewrapped",
    "tokens_rewritten",
    "rows_changed",
    "rows_failed",
    "pass_work",
)
"""The cursor's whole-number counters, columns 2 to 10 of `_CURSOR_COLUMNS`."""


def _cursor(row: Sequence[Any]) -> Cursor:
    counters = {name: int(value) for name, value in zip(_COUNTERS, row[2:11], strict=True)}
    return Cursor(
        pass_number=int(row[0]),
        last_pk=None if row[1] is None else list(json.loads(row[1])),
        **counters,
        pass_usage=_counts(row[11]) or {},
        pass_versions=_counts(row[12]) or {},
        final_usage=_counts(row[13]),
        final_versions=_counts(row[14]),
        seconds=float(row[15]),
        done=bool(row[16]),
    )


def _json_counts(counts: Mapping[int, int] | None) -> str | None:
    return None if counts is None else json.dumps({str(k): v for k, v in sorted(counts.items())})


@dataclass
class _Outcome:
    """What one batch did, before it is committed."""

    rewrapped: int = 0
    fields: int = 0
    macs: int = 0
    tokens: int = 0
    changed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    usage: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)

    def count(self, value: str | None, *, is_field: bool) -> None:
        found = header(value)
        if found is None:
            return
        version, key_id = found
        self.usage[key_id] = self.usage.get(key_id, 0) + 1
        if is_field:
            self.versions[version] = self.versions.get(version, 0) + 1


def _pk_text(key: Sequence[Any]) -> str:
    return json.dumps(list(key), default=str)


class RewrapJob:
    """One service's tables and the worker that rewraps them (see the module docstring)."""

    def __init__(self, service: str, tables: Sequence[Table]) -> None:
        self.service = service
        self.tables = tuple(tables)
        for table in self.tables:
            table.check(service)
        self.instance = ""
        self._failures: dict[tuple[str, str], set[str]] = {}
        self._last_report = 0.0
        self.idle = asyncio.Event()
        """Set while no run needs this replica (tests wait on it)."""
        self.workers: dict[str, RewrapJob] = {}
        """The worker of each runtime serving this job (one per replica), by instance."""

    def worker(self, runtime: Runtime) -> RewrapJob:
        """This declaration's worker for one replica: its own lease identity and state."""
        worker = copy.copy(self)
        worker.instance = runtime.instance
        worker._failures = {}
        worker._last_report = 0.0
        worker.idle = asyncio.Event()
        worker.workers = {}
        self.workers[runtime.instance] = worker
        return worker

    def serve(self, router: RpcRouter) -> RpcRouter:
        """`router` with the service's `key_usage` scan, and the worker started with it."""
        method = KEY_USAGE[self.service]

        async def key_usage(req: kv.KeyUsageRequest, ctx: CallContext) -> kv.KeyUsageReply:
            assert ctx.runtime is not None and ctx.runtime.db is not None
            return await self.scan(ctx.runtime.db)

        router.handler(method)(key_usage)

        async def start(runtime: Runtime) -> None:
            worker = self.worker(runtime)
            runtime.spawn(worker.run_forever(runtime), f"{self.service}-rewrap")

        router.startup.append(start)
        return router

    # -- the scan the keyvault asks for before it destroys a key

    async def scan(self, database: db.Database) -> kv.KeyUsageReply:
        tables: dict[str, dict[int, int]] = {}
        versions: dict[str, dict[int, int]] = {}
        for table in self.tables:
            counted = _Outcome()
            cursor: list[Any] | None = None
            while True:
                args = [*(table.after_args(cursor) if cursor else []), SCAN_PAGE]
                rows = await self._read(database, table, cursor, args)
                for row in rows:
                    for column in table.fields:
                        counted.count(row[column], is_field=True)
                    if table.mac is not None:
                        counted.count(row[table.mac.column], is_field=False)
                if len(rows) < SCAN_PAGE:
                    break
                cursor = list(table.key_of(rows[-1]))
            usage = tables.setdefault(table.logical, {})
            for key_id, n in counted.usage.items():
                usage[key_id] = usage.get(key_id, 0) + n
            seen = versions.setdefault(table.logical, {})
            for version, n in counted.versions.items():
                seen[version] = seen.get(version, 0) + n
        return kv.KeyUsageReply(tables=tables, versions=versions)

    @staticmethod
    async def _read(
        target: Any, table: Table, cursor: Sequence[Any] | None, args: list[Any]
    ) -> list[dict[str, Any]]:
        found = await db.fetchall(target, table.select_after(cursor is not None), args)
        return [dict(zip(table.columns, r, strict=True)) for r in found]

    # -- the worker

    async def run_forever(self, runtime: Runtime) -> None:
        backoff = 1.0
        while True:
            try:
                job = await _call(runtime, kv.REWRAP_JOB, kv.RewrapJobRequest())
                if job.run_id is None or job.done:
                    self.idle.set()
                    await asyncio.sleep(POLL_S)
                    continue
                self.idle.clear()
                if not await self._take_lease(runtime, job):
                    await asyncio.sleep(min(POLL_S, job.lease_seconds / 2))
                    continue
                await self.work(runtime, job)
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except (LeaseLost, RunEnded) as exc:
                log.info("rewrap.stopped", service=self.service, reason=type(exc).__name__)
            except RpcError as exc:  # sealed, no keyvault, a timeout: later
                log.info("rewrap.waiting", service=self.service, reason=exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:
                log.warning("rewrap.failed", service=self.service, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _take_lease(self, runtime: Runtime, job: kv.RewrapJobReply) -> bool:
        assert runtime.db is not None
        micros = int(job.lease_seconds * 1_000_000)
        async for attempt in runtime.db.transactions():
            async with attempt as conn:
                row = await db.fetchone(
                    conn,
                    "SELECT owner, lease_until < NOW(6) FROM mesh_rewrap_lease WHERE name = %s "
                    "FOR UPDATE",
                    (LEASE,),
                )
                if row is None:
                    await db.execute(
                        conn,
                        "INSERT INTO mesh_rewrap_lease (name, owner, lease_until) "
                        "VALUES (%s, %s, NOW(6) + INTERVAL %s MICROSECOND)",
                        (LEASE, self.instance, micros),
                    )
                    return True
                if row[0] != self.instance and not row[1]:
                    return False
                await db.execute(
                    conn,
                    "UPDATE mesh_rewrap_lease SET owner = %s, "
                    "lease_until = NOW(6) + INTERVAL %s MICROSECOND WHERE name = %s",
                    (self.instance, micros, LEASE),
                )
        return True

    async def _renew(self, conn: Sql, job: kv.RewrapJobReply) -> None:
        """In a batch's transaction: still ours (or the batch is rolled back)."""
        changed = await db.execute(
            conn,
            "UPDATE mesh_rewrap_lease SET lease_until = NOW(6) + INTERVAL %s MICROSECOND "
            "WHERE name = %s AND owner = %s",
            (int(job.lease_seconds * 1_000_000), LEASE, self.instance),
        )
        if changed != 1:
            raise LeaseLost()

    async def _cursors(self, runtime: Runtime, run_id: str) -> dict[str, Cursor]:
        """Each table's cursor, made (with its row count) when the run first reaches it."""
        assert runtime.db is not None
        found = {
            str(r[0]): _cursor(r[1:])
            for r in await runtime.db.fetchall(
                f"SELECT table_name, {_CURSOR_COLUMNS} FROM mesh_rewrap_cursors "  # noqa: S608
                "WHERE run_id = %s",
                (run_id,),
            )
        }
        for table in self.tables:
            if table.name not in found:
                total = await runtime.db.fetchone(table.count())
                cursor = Cursor(rows_total=int(total[0]) if total else 0)
                await runtime.db.execute(
                    "INSERT IGNORE INTO mesh_rewrap_cursors (run_id, table_name, rows_total, "
                    "pass_usage, pass_versions) VALUES (%s, %s, %s, '{}', '{}')",
                    (run_id, table.name, cursor.rows_total),
                )
                found[table.name] = cursor
        failures = await runtime.db.fetchall(
            "SELECT table_name, pk FROM mesh_rewrap_failures WHERE run_id = %s", (run_id,)
        )
        self._failures = {}
        for name, pk in failures:
            self._failures.setdefault((run_id, str(name)), set()).add(str(pk))
        return found

    async def work(self, runtime: Runtime, job: kv.RewrapJobReply) -> None:
        assert job.run_id is not None
        cursors = await self._cursors(runtime, job.run_id)
        await self._report(runtime, job, cursors, force=True)
        for table in self.tables:
            cursor = cursors[table.name]
            PASS.labels(self.service, table.name).set(cursor.pass_number)
            while not cursor.done:
                job = await self._batch(runtime, job, table, cursor)
                await self._report(runtime, job, cursors)
        await self._report(runtime, job, cursors, force=True, done=True)
        log.info("rewrap.service_done", service=self.service, run=job.run_id)

    async def _report(
        self,
        runtime: Runtime,
        job: kv.RewrapJobReply,
        cursors: Mapping[str, Cursor],
        *,
        force: bool = False,
        done: bool = False,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < REPORT_S:
            return
        self._last_report = now
        assert job.run_id is not None
        failures = await self._failure_list(runtime, job.run_id) if done else []
        reply = await _call(
            runtime,
            kv.REWRAP_REPORT,
            kv.RewrapReportRequest(
                run_id=job.run_id,
                tables=[cursors[t.name].progress(t.logical) for t in self.tables],
                failures=failures,
                done=done,
            ),
        )
        if reply.state is not kv.RewrapState.running:
            raise RunEnded()

    async def _failure_list(self, runtime: Runtime, run_id: str) -> list[kv.RewrapFailure]:
        assert runtime.db is not None
        logical = {t.name: t.logical for t in self.tables}
        rows = await runtime.db.fetchall(
            "SELECT table_name, pk, reason FROM mesh_rewrap_failures WHERE run_id = %s "
            "ORDER BY table_name, pk LIMIT 1000",
            (run_id,),
        )
        return [
            kv.RewrapFailure(table=logical.get(str(t), str(t)), pk=str(pk), reason=str(r))
            for t, pk, r in rows
        ]

    async def _batch(
        self, runtime: Runtime, job: kv.RewrapJobReply, table: Table, cursor: Cursor
    ) -> kv.RewrapJobReply:
        """One batch of one table: read, ask the keyvault, write what still matches."""
        assert runtime.db is not None and job.run_id is not None
        started = time.perf_counter()
        limit = job.batch_rows
        args = [*(table.after_args(cursor.last_pk) if cursor.last_pk else []), limit]
        rows = await self._read(runtime.db, table, cursor.last_pk, args)
        known = self._failures.get((job.run_id, table.name), set())
        outcome = _Outcome()
        todo: list[tuple[dict[str, Any], kv.RewrapRow]] = []
        for row in rows:
            if _pk_text(table.key_of(row)) in known or not self._needs_work(table, row, job):
                self._count_row(table, row, outcome)
                continue
            todo.append((row, table.request(row, job.reindex)))
        results: list[kv.RewrappedRow] = []
        if todo:
            reply = await _call(
                runtime,
                kv.REWRAP,
                kv.RewrapRequest(run_id=job.run_id, rows=[r for _, r in todo]),
                timeout=max(runtime.settings.rpc_deadline_s, 30.0),
            )
            results = reply.rows
            job = job.model_copy(
                update={"active_keys": reply.active_keys, "integrity_key": reply.integrity_key}
            )
        side = await self._side_tokens(runtime.db, table, [r for r, _ in todo], lock=False)
        run_id: str = job.run_id or ""
        async with runtime.db.transaction() as conn:
            await self._renew(conn, job)
            if todo:
                await self._write(conn, table, todo, results, side, outcome)
            last = list(table.key_of(rows[-1])) if rows else cursor.last_pk
            self._advance(cursor, len(rows), outcome, last)
            finished_pass = len(rows) < limit
            if finished_pass:
                self._end_pass(cursor, table)
            cursor.seconds += time.perf_counter() - started
            await self._save(conn, run_id, table, cursor, outcome)
        self._metrics(table, outcome, len(rows), cursor)
        BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        if job.rows_per_second and rows:
            pause = len(rows) / job.rows_per_second - (time.perf_counter() - started)
            if pause > 0:
                await asyncio.sleep(pause)  # the throttle: the clinic comes first
        return job

    @staticmethod
    def _needs_work(table: Table, row: Mapping[str, Any], job: kv.RewrapJobReply) -> bool:
        if job.reindex and table.indexes:
            return True
        active = set(job.active_keys)
        for column in table.fields:
            found = header(row[column])
            if row[column] is not None and (
                found is None or found[0] != job.field_version or found[1] not in active
            ):
                return True
        if table.mac is not None:
            found = header(row[table.mac.column])
            if found is None or found[1] != job.integrity_key:
                return True
        return False

    @staticmethod
    def _count_row(table: Table, row: Mapping[str, Any], outcome: _Outcome) -> None:
        for column in table.fields:
            outcome.count(row[column], is_field=True)
        if table.mac is not None:
            outcome.count(row[table.mac.column], is_field=False)

    async def _side_tokens(
        self, target: Any, table: Table, rows: Sequence[Mapping[str, Any]], *, lock: bool
    ) -> dict[str, dict[str, set[str]]]:
        """Per side-table index, key value -> the tokens stored for it."""
        found: dict[str, dict[str, set[str]]] = {}
        for name, where in table.indexes.items():
            if not isinstance(where, SideTable) or not rows:
                continue
            keys = sorted({str(r[where.source]) for r in rows})
            marks = ", ".join(["%s"] * len(keys))
            sql = (
                f"SELECT {_ident(where.key)}, {_ident(where.token)} FROM {_ident(where.table)} "  # noqa: S608
                f"WHERE {_ident(where.key)} IN ({marks})" + (" FOR UPDATE" if lock else "")
            )
            tokens: dict[str, set[str]] = {k: set() for k in keys}
            for key, token in await db.fetchall(target, sql, keys):
                tokens.setdefault(str(key), set()).add(str(token))
            found[name] = tokens
        return found

    async def _write(
        self,
        conn: Sql,
        table: Table,
        todo: Sequence[tuple[dict[str, Any], kv.RewrapRow]],
        results: Sequence[kv.RewrappedRow],
        read_side: Mapping[str, Mapping[str, set[str]]],
        outcome: _Outcome,
    ) -> None:
        """Lock the batch's rows, keep every row a user changed meanwhile, write the rest."""
        keys = [table.key_of(row) for row, _ in todo]
        locked_rows = await db.fetchall(
            conn, table.lock(len(keys)), [v for key in keys for v in key]
        )
        current = {
            table.key_of(dict(zip(table.columns, r, strict=True))): dict(
                zip(table.columns, r, strict=True)
            )
            for r in locked_rows
        }
        side = await self._side_tokens(conn, table, [row for row, _ in todo], lock=True)
        for (row, _), result in zip(todo, results, strict=True):
            key = table.key_of(row)
            now = current.get(key)
            if (
                now is None
                or now != row
                or _side_of(side, table, row) != _side_of(read_side, table, row)
            ):
                outcome.changed += 1  # a user changed (or deleted) it: theirs stands
                if now is not None:
                    self._count_row(table, now, outcome)
                continue
            if result.error is not None:
                outcome.failed.append((_pk_text(key), result.error[:300]))
                self._count_row(table, row, outcome)
                continue
            await self._apply(conn, table, row, result, side, outcome)

    async def _apply(
        self,
        conn: Sql,
        table: Table,
        row: dict[str, Any],
        result: kv.RewrappedRow,
        side: Mapping[str, Mapping[str, set[str]]],
        outcome: _Outcome,
    ) -> None:
        changes: dict[str, Any] = {}
        by_field = {f: c for c, f in table.fields.items()}
        for field_name, ciphertext in result.fields.items():
            column = by_field.get(field_name)
            if column is None:
                raise ValueError(f"the keyvault returned an unknown field {field_name!r}")
            changes[column] = ciphertext
        if result.mac is not None and table.mac is not None:
            changes[table.mac.column] = result.mac
        side_changes: list[tuple[SideTable, str, list[str]]] = []
        for name, where in table.indexes.items():
            if name not in result.tokens:
                continue
            tokens = result.tokens[name]
            if isinstance(where, str):
                value = tokens[0] if tokens else None
                if value != row[where]:
                    changes[where] = value
            else:
                key = str(row[where.source])
                if set(tokens) != side.get(name, {}).get(key, set()):
                    side_changes.append((where, key, tokens))
        new_row = {**row, **changes}
        if changes:
            try:
                await db.execute(
                    conn,
                    table.update(list(changes)),
                    [*changes.values(), *table.key_of(row)],
                )
            except IntegrityError as exc:
                if not db.is_duplicate_key(exc) and exc.args[:1] != (1048,):
                    raise
                why = "a recomputed blind index collides with another row's, or is missing"
                outcome.failed.append((_pk_text(table.key_of(row)), why))
                self._count_row(table, row, outcome)
                return
        for where, key, tokens in side_changes:
            await db.execute(
                conn,
                f"DELETE FROM {_ident(where.table)} WHERE {_ident(where.key)} = %s",  # noqa: S608
                (key,),
            )
            for token in sorted(set(tokens)):
                await db.execute(
                    conn,
                    f"INSERT INTO {_ident(where.table)} ({_ident(where.token)}, "  # noqa: S608
                    f"{_ident(where.key)}) VALUES (%s, %s)",
                    (token, key),
                )
        if result.fields:
            outcome.rewrapped += 1
            outcome.fields += len(result.fields)
        if result.mac is not None:
            outcome.macs += 1
        token_columns = {c for c in changes if c in table.indexes.values()}
        if token_columns or side_changes:
            outcome.tokens += 1
        if not result.fields and (result.mac is not None or token_columns or side_changes):
            outcome.rewrapped += 1
        self._count_row(table, new_row, outcome)

    @staticmethod
    def _advance(cursor: Cursor, scanned: int, outcome: _Outcome, last: list[Any] | None) -> None:
        cursor.rows_scanned += scanned
        cursor.rows_rewrapped += outcome.rewrapped
        cursor.fields_rewrapped += outcome.fields
        cursor.macs_rewrapped += outcome.macs
        cursor.tokens_rewritten += outcome.tokens
        cursor.rows_changed += outcome.changed
        cursor.rows_failed += len(outcome.failed)
        cursor.pass_work += outcome.rewrapped + outcome.changed
        for key_id, n in outcome.usage.items():
            cursor.pass_usage[key_id] = cursor.pass_usage.get(key_id, 0) + n
        for version, n in outcome.versions.items():
            cursor.pass_versions[version] = cursor.pass_versions.get(version, 0) + n
        cursor.last_pk = last

    @staticmethod
    def _end_pass(cursor: Cursor, table: Table) -> None:
        """A pass with nothing to do ends the table; otherwise the next pass begins (to
        catch rows written meanwhile under a key retired just before)."""
        if cursor.pass_work == 0:
            cursor.done = True
            cursor.final_usage = dict(cursor.pass_usage)
            cursor.final_versions = dict(cursor.pass_versions)
            return
        cursor.pass_number += 1
        cursor.pass_work = 0
        cursor.rows_scanned = 0
        cursor.last_pk = None
        cursor.pass_usage = {}
        cursor.pass_versions = {}

    async def _save(
        self, conn: Sql, run_id: str, table: Table, cursor: Cursor, outcome: _Outcome
    ) -> None:
        if cursor.pass_number > 1 and cursor.rows_scanned == 0 and not cursor.done:
            total = await db.fetchone(conn, table.count())
            cursor.rows_total = int(total[0]) if total else cursor.rows_total
        await db.execute(
            conn,
            "UPDATE mesh_rewrap_cursors SET pass_number = %s, last_pk = %s, rows_total = %s, "
            "rows_scanned = %s, rows_rewrapped = %s, fields_rewrapped = %s, "
            "macs_rewrapped = %s, tokens_rewritten = %s, rows_changed = %s, rows_failed = %s, "
            "pass_work = %s, pass_usage = %s, pass_versions = %s, final_usage = %s, "
            "final_versions = %s, seconds = %s, done = %s WHERE run_id = %s AND table_name = %s",
            (
                cursor.pass_number,
                None if cursor.last_pk is None else _pk_text(cursor.last_pk),
                cursor.rows_total,
                cursor.rows_scanned,
                cursor.rows_rewrapped,
                cursor.fields_rewrapped,
                cursor.macs_rewrapped,
                cursor.tokens_rewritten,
                cursor.rows_changed,
                cursor.rows_failed,
                cursor.pass_work,
                _json_counts(cursor.pass_usage),
                _json_counts(cursor.pass_versions),
                _json_counts(cursor.final_usage),
                _json_counts(cursor.final_versions),
                cursor.seconds,
                cursor.done,
                run_id,
                table.name,
            ),
        )
        known = self._failures.setdefault((run_id, table.name), set())
        for pk, reason in outcome.failed:
            await db.execute(
                conn,
                "INSERT IGNORE INTO mesh_rewrap_failures (run_id, table_name, pk, reason) "
                "VALUES (%s, %s, %s, %s)",
                (run_id, table.name, pk, reason),
            )
            known.add(pk)

    def _metrics(self, table: Table, outcome: _Outcome, scanned: int, cursor: Cursor) -> None:
        labels = (self.service, table.name)
        untouched = scanned - outcome.rewrapped - outcome.changed - len(outcome.failed)
        for name, n in (
            ("rewrapped", outcome.rewrapped),
            ("current", max(untouched, 0)),
            ("changed", outcome.changed),
            ("failed", len(outcome.failed)),
        ):
            if n:
                ROWS.labels(*labels, name).inc(n)
        if outcome.fields:
            FIELDS.labels(*labels).inc(outcome.fields)
        if outcome.macs:
            MACS.labels(*labels).inc(outcome.macs)
        if outcome.tokens:
            TOKENS.labels(*labels).inc(outcome.tokens)
        remaining = 0 if cursor.done else max(cursor.rows_total - cursor.rows_scanned, 0)
        REMAINING.labels(*labels).set(remaining)
        PASS.labels(*labels).set(cursor.pass_number)


async def _call(
    runtime: Runtime,
    method: RpcMethod[ReqT, RespT],
    request: ReqT,
    timeout: float | None = None,
) -> RespT:
    """An RPC bounded as a whole (publishing included: a call caught in a broker restart
    must not hang the worker for good)."""
    deadline = (timeout or runtime.settings.rpc_deadline_s) + 10.0
    try:
        return await asyncio.wait_for(runtime.rpc.call(method, request, timeout=timeout), deadline)
    except TimeoutError:
        raise Unavailable(f"{method.name} did not answer within {deadline:.0f} s") from None


def _side_of(
    side: Mapping[str, Mapping[str, set[str]]], table: Table, row: Mapping[str, Any]
) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for name, where in table.indexes.items():
        if isinstance(where, SideTable):
            out[name] = frozenset(side.get(name, {}).get(str(row[where.source]), set()))
    return out


__all__ = ["Col", "Mac", "RewrapJob", "SideTable", "Table", "header"]
