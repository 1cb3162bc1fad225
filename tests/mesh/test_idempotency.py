"""Idempotent writes on a real MariaDB (mesh.idempotency, called directly; the path over
the bus, with concurrent duplicates, is in test_rpc.py): a failed write frees its key, a
key cannot be reused for another request, a reply holding a secret is not kept, and a
user's signed write under a second idempotency key is a replay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

import pytest
from asyncmy.errors import OperationalError

from mesh import db
from mesh.context import CallContext, current_call
from mesh.errors import BadRequest, Conflict, Unauthenticated
from mesh.idempotency import MAX_KEY_LENGTH, run_idempotent
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.mesh.fixtures import (
    ECHO,
    WRITE_NOTE,
    Counters,
    EchoRequest,
    NoteReply,
    NoteRequest,
    running_service,
)


@dataclass(frozen=True)
class SignedOnce:
    """What run_idempotent reads of a verified operation: its single-use key."""

    once_key: str


class Writer:
    """A write handler that inserts a note, and fails when told to."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail = False

    async def __call__(self, request: NoteRequest, ctx: CallContext) -> NoteReply:
        self.runs += 1
        await db.execute(ctx.tx, "INSERT INTO notes (note) VALUES (%s)", (request.note,))
        if self.fail:
            raise RuntimeError("the write failed after its insert")
        return NoteReply(note_id=self.runs, runs=self.runs)


def context(runtime: Runtime, key: str | None, proof: str | None = None) -> CallContext:
    operation = cast(Any, SignedOnce(proof)) if proof is not None else None
    return CallContext(
        method=WRITE_NOTE.name, idempotency_key=key, runtime=runtime, operation=operation
    )


async def count(runtime: Runtime, note: str) -> int:
    assert runtime.db is not None
    row = await runtime.db.fetchone("SELECT COUNT(*) FROM notes WHERE note = %s", (note,))
    assert row is not None
    return int(row[0])


async def test_a_write_needs_a_key_of_sensible_length(settings: Settings) -> None:
    async with running_service(settings) as runtime:
        writer = Writer()
        for key in (None, "", "k" * (MAX_KEY_LENGTH + 1)):
            with pytest.raises(BadRequest, match="idempotency key"):
                await run_idempotent(writer, NoteRequest(note="x"), context(runtime, key))
        assert writer.runs == 0


async def test_a_failed_write_frees_its_key_and_a_retry_runs(settings: Settings) -> None:
    async with running_service(settings) as runtime:
        writer, key, note = Writer(), str(uuid.uuid4()), f"retry-{uuid.uuid4()}"
        writer.fail = True
        with pytest.raises(RuntimeError):
            await run_idempotent(writer, NoteRequest(note=note), context(runtime, key))
        assert await count(runtime, note) == 0  # the insert rolled back with the key
        writer.fail = False
        body = await run_idempotent(writer, NoteRequest(note=note), context(runtime, key))
        again = await run_idempotent(writer, NoteRequest(note=note), context(runtime, key))
        assert body == again and writer.runs == 2
        assert await count(runtime, note) == 1


async def test_a_key_reused_for_another_request_is_refused(settings: Settings) -> None:
    async with running_service(settings) as runtime:
        writer, key = Writer(), str(uuid.uuid4())
        await run_idempotent(writer, NoteRequest(note="first"), context(runtime, key))
        with pytest.raises(Conflict, match="different request"):
            await run_idempotent(writer, NoteRequest(note="second"), context(runtime, key))
        assert writer.runs == 1


async def test_a_reply_that_must_not_rest_in_the_database_is_not_kept(
    settings: Settings,
) -> None:
    async with running_service(settings) as runtime:
        writer, key = Writer(), str(uuid.uuid4())
        first = await run_idempotent(
            writer, NoteRequest(note="secret"), context(runtime, key), keep_reply=False
        )
        assert NoteReply.model_validate_json(first).runs == 1
        assert runtime.db is not None
        row = await runtime.db.fetchone(
            "SELECT response FROM mesh_idempotency WHERE idem_key = %s", (key,)
        )
        assert row is not None and bytes(row[0]) == b""
        with pytest.raises(Conflict, match="not kept"):
            await run_idempotent(
                writer, NoteRequest(note="secret"), context(runtime, key), keep_reply=False
            )
        assert writer.runs == 1


async def test_a_signed_write_under_a_second_key_is_a_replay(settings: Settings) -> None:
    async with running_service(settings) as runtime:
        writer, proof = Writer(), f"key-1:{uuid.uuid4()}"
        key, note = str(uuid.uuid4()), f"signed-{uuid.uuid4()}"
        first = await run_idempotent(writer, NoteRequest(note=note), context(runtime, key, proof))
        # the same delivery again (same key, same signature): the stored reply
        redelivered = await run_idempotent(
            writer, NoteRequest(note=note), context(runtime, key, proof)
        )
        assert redelivered == first
        # the same signature under a fresh idempotency key: someone replays it
        with pytest.raises(Unauthenticated, match="already used"):
            await run_idempotent(
                writer, NoteRequest(note=note), context(runtime, str(uuid.uuid4()), proof)
            )
        assert writer.runs == 1 and await count(runtime, note) == 1


async def test_a_write_rolled_back_by_a_conflict_runs_again_with_its_signed_calls_replayed(
    settings: Settings,
) -> None:
    """A certification conflict (1213) rolls the whole write back and it runs again; a
    call it made with the user's proof is not sent a second time (the keyvault would
    refuse the spent proof): the second attempt gets the first one's reply."""
    counters = Counters()
    async with running_service(settings, counters) as runtime:
        runs = 0

        async def handler(request: NoteRequest, ctx: CallContext) -> NoteReply:
            nonlocal runs
            runs += 1
            body = EchoRequest(text=f"signed-{request.note}").model_dump_json().encode()
            reply = await runtime.rpc.call_raw(
                ECHO.queue, ECHO.name, body, proof='{"signed":"once"}', for_user=True
            )
            await db.execute(ctx.tx, "INSERT INTO notes (note) VALUES (%s)", (request.note,))
            if runs == 1:
                raise OperationalError(db.DEADLOCK, "certification failed")
            return NoteReply(note_id=len(reply), runs=runs)

        note = f"conflict-{uuid.uuid4().hex[:6]}"
        ctx = context(runtime, str(uuid.uuid4()))
        token = current_call.set(ctx)
        try:
            await run_idempotent(handler, NoteRequest(note=note), ctx)
        finally:
            current_call.reset(token)
        assert runs == 2
        assert counters.started == [f"signed-{note}"]  # served once, replayed once
        assert await count(runtime, note) == 1
        assert ctx.replies is None  # nothing kept past the write
