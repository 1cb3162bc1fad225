"""Keyvault field encryption through RPC vs. ChaCha20-Poly1305 in-process, same run.

Target (issue: keyvault): per-field cost through RPC at 1,000-field batches <= 5x the
in-process cost. The keyvault runs as its own process (as in production); decryption
goes through the signature gate with real Ed25519 proofs, with a stand-in auth service
in this process answering `auth.resolve_key`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.public import PrivateKey

from bench.common import write_results
from contracts import keyvault as kv
from contracts.auth import (
    RESOLVE_KEY,
    Account,
    AccountRecord,
    AccountStatus,
    ResolveKeyRequest,
    account_mac_row,
)
from contracts.base import Principal, Role
from mesh.context import CallContext
from mesh.db import drop_databases
from mesh.httpsig import proof_from_headers, sign_request
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings, get_settings
from services.keyvault import ciphers
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share

ROOT = Path(__file__).resolve().parents[1]
FIELD = "x" * 1024
BATCHES = (1, 100, 1000)
URI = "http://bench/api/v1/patients/p1"


def bench_settings() -> Settings:
    base = get_settings()
    return base.model_copy(update={"db_prefix": f"mhbench_{secrets.token_hex(3)}_"})


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MEDIHAVEN_AMQP_URL": settings.amqp_url.get_secret_value(),
            "MEDIHAVEN_DB_PREFIX": settings.db_prefix,
            "MEDIHAVEN_HTTP_PORT": "0",
            "MEDIHAVEN_LOG_LEVEL": "WARNING",
            "MEDIHAVEN_DEV_MODE": "false",
        }
    )
    return env


async def time_per_field(call, fields: int, repeat_s: float = 1.5) -> float:  # type: ignore[no-untyped-def]
    """Seconds per field, over as many calls as fit in `repeat_s` (at least 3)."""
    calls = 0
    started = time.perf_counter()
    while calls < 3 or time.perf_counter() - started < repeat_s:
        await call()
        calls += 1
    return (time.perf_counter() - started) / (calls * fields)


async def run() -> Mapping[str, object]:
    settings = bench_settings()
    records: dict[str, AccountRecord] = {}
    router = RpcRouter("auth")

    @router.handler(RESOLVE_KEY)
    async def resolve(req: ResolveKeyRequest, ctx: CallContext) -> AccountRecord:
        return records[req.account_id]

    proc = subprocess.Popen(  # noqa: ASYNC220 - started once before measuring
        [sys.executable, "-m", "services.keyvault"], cwd=ROOT, env=child_env(settings)
    )
    client = await Runtime.start("keyvault-bench", settings, router=router, use_database=False)
    try:
        for _ in range(100):
            try:
                status = await client.rpc.call(kv.STATUS, kv.StatusRequest(), timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.2)
        operator = PrivateKey.generate()
        init = await client.rpc.call(
            kv.INIT, kv.InitRequest(recipient_public_key=public_key_b64(operator.public_key))
        )
        for sealed in init.sealed_shares[:3]:
            share = open_share(operator, sealed)
            await client.rpc.call(
                kv.UNSEAL,
                kv.UnsealRequest(sealed_share=seal_share(status.transport_public_key, share)),
            )
        # A physician account, MAC'd by the keyvault, served by the stand-in auth.
        key = Ed25519PrivateKey.generate()
        now = datetime.now(UTC)
        account = Account(
            account_id="bench-physician",
            username="bench",
            display_name="Bench",
            role=Role.physician,
            status=AccountStatus.active,
            public_key=base64.b64encode(
                key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            ).decode(),
            created_at=now,
            updated_at=now,
        )
        tag = (await client.rpc.call(kv.MAC, kv.MacRequest(rows=[account_mac_row(account)]))).tags
        records[account.account_id] = AccountRecord(account=account, mac=tag[0])
        principal = Principal(account_id=account.account_id, role=Role.physician)

        def proof() -> str:
            headers = sign_request(key, account.account_id, "GET", URI, b"")
            return proof_from_headers("GET", URI, headers).model_dump_json()

        aead = ChaCha20Poly1305(secrets.token_bytes(32))
        plain = FIELD.encode()
        results: dict[str, dict[str, float]] = {}
        print("\nKeyvault field encryption, 1 KiB fields (microseconds per field)")
        print(
            f"{'batch':>6}{'enc RPC':>10}{'dec RPC':>10}{'aead':>10}{'format':>10}"
            f"{'enc/a':>7}{'dec/a':>7}{'enc/f':>7}{'dec/f':>7}"
        )
        for size in BATCHES:
            rows = [
                kv.FieldRow(table="bench", row_id=str(i), fields={"f": FIELD}) for i in range(size)
            ]
            request = kv.EncryptRequest(rows=rows)
            encrypted = await client.rpc.call(kv.ENCRYPT, request)
            dec_rows = [
                kv.FieldRow(table="bench", row_id=str(i), fields=enc)
                for i, enc in enumerate(encrypted.rows)
            ]

            async def rpc_encrypt(request: kv.EncryptRequest = request) -> None:
                await client.rpc.call(kv.ENCRYPT, request)

            async def rpc_decrypt(dec_rows: list[kv.FieldRow] = dec_rows) -> None:
                await client.rpc.call(
                    kv.DECRYPT, kv.DecryptRequest(rows=dec_rows), principal=principal, proof=proof()
                )

            async def in_process(size: int = size) -> None:
                for i in range(size):
                    nonce = i.to_bytes(12, "big")
                    aead.decrypt(nonce, aead.encrypt(nonce, plain, b"ctx"), b"ctx")

            async def in_process_format(size: int = size) -> None:
                """The keyvault's own field format, in this process: the work minus RPC."""
                contexts = [ciphers.FieldContext("bench", "f", str(i)) for i in range(size)]
                blobs = ciphers.encrypt_fields(
                    aead, 1, b"\0\0\0\0", 0, [(plain, c) for c in contexts]
                )
                for blob, context in zip(blobs, contexts, strict=True):
                    text = base64.b64encode(blob).decode()
                    ciphers.decrypt_field(aead, base64.b64decode(text), context)

            enc = await time_per_field(rpc_encrypt, size)
            dec = await time_per_field(rpc_decrypt, size)
            # in-process does encrypt AND decrypt per field: halve it for one operation
            local = await time_per_field(in_process, size) / 2
            formatted = await time_per_field(in_process_format, size) / 2
            results[str(size)] = {
                "encrypt_rpc_us": enc * 1e6,
                "decrypt_rpc_us": dec * 1e6,
                "in_process_aead_us": local * 1e6,
                "in_process_format_us": formatted * 1e6,
                "encrypt_ratio_aead": enc / local,
                "decrypt_ratio_aead": dec / local,
                "encrypt_ratio_format": enc / formatted,
                "decrypt_ratio_format": dec / formatted,
            }
            r = results[str(size)]
            print(
                f"{size:>6}{r['encrypt_rpc_us']:>10.2f}{r['decrypt_rpc_us']:>10.2f}"
                f"{r['in_process_aead_us']:>10.2f}{r['in_process_format_us']:>10.2f}"
                f"{r['encrypt_ratio_aead']:>7.1f}{r['decrypt_ratio_aead']:>7.1f}"
                f"{r['encrypt_ratio_format']:>7.1f}{r['decrypt_ratio_format']:>7.1f}"
            )
        print(
            "  aead = bare ChaCha20-Poly1305 in-process; format = the keyvault's field format\n"
            "  (context AAD, header, base64) in-process. Target: at 1000-field batches, RPC\n"
            "  per-field cost <= 5x in-process."
        )
        print(f"  written: {write_results('keyvault', results)}")
        return results
    finally:
        await client.stop()
        proc.terminate()
        proc.wait(10)
        await drop_databases(settings)


if __name__ == "__main__":
    asyncio.run(run())
