"""Keyvault field encryption through RPC vs. ChaCha20-Poly1305 in-process, same run.

Target (issue: keyvault): per-field cost through RPC at 1,000-field batches <= 5x the
in-process cost. The keyvault runs as its own process (as in production), in a namespace
of its own (`bench.namespace`). This process calls it as the records service (the owner
of the `patients` table): encryption as records does it, and decryption as records does
it for a receptionist's `GET /api/v1/patients/{P}` (`records.get_patient`, whose grant
lets records decrypt any number of `patients` rows bound to patient P): every DECRYPT
carries a fresh Ed25519 proof of that request, which the keyvault verifies (signer's
account row from a stand-in auth service in this process, MAC checked), checks against
the grant, and claims once in Redis, before it decrypts the batch.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.common import pick, write_results
from bench.namespace import namespace
from contracts import keyvault as kv
from contracts import records as rec
from contracts.auth import Account, AccountRecord, AccountStatus, account_mac_row
from contracts.base import OPERATOR, Role
from contracts.http import target_of
from mesh.db import Database, drop_databases
from mesh.httpsig import proof_from_headers, sign_request
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault import ciphers
from services.keyvault.sealedbox import public_key_b64, seal_share
from services.keyvault.vault import Vault
from tests.keyvault.support import Initialised, initialise, unseal
from tests.processes import process_env
from tests.support.clinic import stand_in_auth

ROOT = Path(__file__).resolve().parents[1]
FIELD = "x" * 1024
BATCHES = (1, 100, 1000)
QUICK_BATCHES = (1, 10)
ORIGIN = "http://bench"


def child_env(settings: Settings) -> dict[str, str]:
    return process_env(
        settings,
        MEDIHAVEN_HTTP_PORT="0",
        MEDIHAVEN_LOG_LEVEL="WARNING",
        MEDIHAVEN_DEV_MODE="false",
    )


async def mac_accounts(
    settings: Settings, init: Initialised, accounts: Sequence[Account]
) -> list[str]:
    """The account rows' MACs, as auth would store them after signed registrations.

    The keyvault MACs account rows on the bus only for a signed registration, so (as the
    service tests do with their in-process keyvault) this MACs them with a vault object of
    this process: the keyvault's own database and keys, unsealed with the same shares,
    not serving on the bus (it leases its own nonce counters), sealed again at once.
    """
    database = await Database.connect(settings, settings.database(kv.SERVICE))
    try:
        vault = Vault(database, f"bench-mac-{secrets.token_hex(3)}")
        await vault.load()
        for share in init.shares[: init.threshold]:
            await vault.submit_share(seal_share(public_key_b64(vault.transport), share))
        try:
            return await vault.mac([account_mac_row(a) for a in accounts])
        finally:
            await vault.seal()
    finally:
        await database.close()


async def time_per_field(call, fields: int, repeat_s: float = 1.5) -> float:  # type: ignore[no-untyped-def]
    """Seconds per field, over as many calls as fit in `repeat_s` (at least 3)."""
    calls = 0
    started = time.perf_counter()
    while calls < 3 or time.perf_counter() - started < repeat_s:
        await call()
        calls += 1
    return (time.perf_counter() - started) / (calls * fields)


async def run() -> Mapping[str, object]:
    with namespace("keyvault") as settings:
        try:
            return await _run(settings)
        finally:
            await drop_databases(settings)


async def _run(settings: Settings) -> Mapping[str, object]:
    records: dict[str, AccountRecord] = {}
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once before measuring
        [sys.executable, "-m", "services.keyvault"], cwd=ROOT, env=child_env(settings)
    )
    runtimes: list[Runtime] = []
    try:
        auth = await Runtime.start(
            "auth", settings, router=stand_in_auth(records), use_database=False
        )
        runtimes.append(auth)
        tool = await Runtime.start(
            "keyvault-bench-operator", settings, use_database=False, identity=OPERATOR
        )
        runtimes.append(tool)
        client = await Runtime.start(
            "keyvault-bench", settings, use_database=False, identity=rec.SERVICE
        )
        runtimes.append(client)
        for _ in range(100):
            try:
                await tool.rpc.call(kv.STATUS, kv.StatusRequest(), timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.2)
        init = await initialise(tool.rpc)
        await unseal(tool.rpc, init.shares)
        # A receptionist account, MAC'd with the keyvault's keys, served by the stand-in auth.
        key = Ed25519PrivateKey.generate()
        now = datetime.now(UTC)
        account = Account(
            account_id="bench-receptionist",
            username="bench",
            display_name="Bench",
            role=Role.receptionist,
            status=AccountStatus.active,
            public_key=base64.b64encode(
                key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            ).decode(),
            created_at=now,
            updated_at=now,
        )
        (tag,) = await mac_accounts(settings, init, [account])
        records[account.account_id] = AccountRecord(account=account, mac=tag)
        patient_id = str(uuid.uuid4())
        binding = {"patient": patient_id}
        bound = tuple(sorted(binding.items()))
        verb, path, _ = target_of(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=patient_id))
        uri = ORIGIN + path

        def proof() -> str:
            """A fresh proof of the receptionist's GET /api/v1/patients/{P} (used once)."""
            headers = sign_request(key, account.account_id, verb, uri, b"")
            return proof_from_headers(verb, uri, headers).model_dump_json()

        aead = ChaCha20Poly1305(secrets.token_bytes(32))
        plain = FIELD.encode()
        results: dict[str, dict[str, float]] = {}
        print("\nKeyvault field encryption, 1 KiB fields (microseconds per field)")
        print(
            f"{'batch':>6}{'enc RPC':>10}{'dec RPC':>10}{'aead':>10}{'format':>10}"
            f"{'enc/a':>7}{'dec/a':>7}{'enc/f':>7}{'dec/f':>7}"
        )
        for size in pick(BATCHES, QUICK_BATCHES):
            rows = [
                kv.FieldRow(
                    table=rec.PATIENTS_TABLE, row_id=str(i), fields={"f": FIELD}, binding=binding
                )
                for i in range(size)
            ]
            request = kv.EncryptRequest(rows=rows)
            encrypted = await client.rpc.call(kv.ENCRYPT, request)
            dec_rows = [
                kv.FieldRow(table=rec.PATIENTS_TABLE, row_id=str(i), fields=enc, binding=binding)
                for i, enc in enumerate(encrypted.rows)
            ]
            check = await client.rpc.call(
                kv.DECRYPT, kv.DecryptRequest(rows=dec_rows), proof=proof(), signed_body=b""
            )
            assert not check.failed and all(r == {"f": FIELD} for r in check.rows), check.failed

            async def rpc_encrypt(request: kv.EncryptRequest = request) -> None:
                await client.rpc.call(kv.ENCRYPT, request)

            async def rpc_decrypt(dec_rows: list[kv.FieldRow] = dec_rows) -> None:
                await client.rpc.call(
                    kv.DECRYPT, kv.DecryptRequest(rows=dec_rows), proof=proof(), signed_body=b""
                )

            async def in_process(size: int = size) -> None:
                for i in range(size):
                    nonce = i.to_bytes(12, "big")
                    aead.decrypt(nonce, aead.encrypt(nonce, plain, b"ctx"), b"ctx")

            async def in_process_format(size: int = size) -> None:
                """The keyvault's own field format, in this process: the work minus RPC."""
                contexts = [
                    ciphers.FieldContext(rec.PATIENTS_TABLE, "f", str(i), bound)
                    for i in range(size)
                ]
                blobs = ciphers.encrypt_fields(
                    aead, 1, b"\0\0\0\0", 0, [(plain, c) for c in contexts]
                )
                for blob, context in zip(blobs, contexts, strict=True):
                    text = base64.b64encode(blob).decode()
                    ciphers.decrypt_field(aead, base64.b64decode(text), context)

            window = pick(1.5, 0.1)
            enc = await time_per_field(rpc_encrypt, size, window)
            dec = await time_per_field(rpc_decrypt, size, window)
            # in-process does encrypt AND decrypt per field: halve it for one operation
            local = await time_per_field(in_process, size, window) / 2
            formatted = await time_per_field(in_process_format, size, window) / 2
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
        for runtime in reversed(runtimes):
            await runtime.stop()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(run())
