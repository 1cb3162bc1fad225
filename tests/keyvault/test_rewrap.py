"""`keyvault.rewrap` and the rewrap run, against a real keyvault on the bus: ciphertext in,
ciphertext out, for exactly the same context and binding, only for the table's owner and
only while an administrator's run is on; MACs made again only over a row whose old tag
verifies; blind indexes recomputed only as declared in the contracts, in a reindexing
run. Each test plays the attacker it names: a taken-over service with its own broker
password, a taken-over gateway holding a captured signature."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from contracts import keyvault as kv
from contracts.auth import Account, AccountStatus, account_mac_row
from contracts.base import Role
from mesh.errors import Conflict, Forbidden, Unauthenticated
from mesh.settings import Settings
from services.keyvault import ciphers
from tests.conftest import isolated_settings
from tests.keyvault.lifecycle_support import World, world
from tests.mesh.fixtures import client_runtime

PATIENT, OTHER = "patient-1", "patient-2"


@pytest.fixture(scope="module")
def rw_settings() -> Iterator[Settings]:
    with isolated_settings("kvrewrap") as settings:
        yield settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w(rw_settings: Settings) -> AsyncIterator[World]:
    async with world(rw_settings) as found:
        yield found


def field_row(row_id: str, patient: str = PATIENT, **fields: str) -> kv.FieldRow:
    return kv.FieldRow(table="patients", row_id=row_id, fields=fields, binding={"patient": patient})


async def encrypt(
    w: World, rows: list[kv.FieldRow], owner: str = "records"
) -> list[dict[str, str]]:
    reply = await w.owners[owner].rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))
    return reply.rows


def key_of(ciphertext: str) -> int:
    return ciphers.parse_field(base64.b64decode(ciphertext)).key_id


def version_of(ciphertext: str) -> int:
    return ciphers.parse_field(base64.b64decode(ciphertext)).version


async def rotate(w: World, purpose: kv.KeyPurpose = kv.KeyPurpose.data) -> kv.RotateReply:
    return await w.clinic.call(kv.ROTATE, kv.RotateRequest(add=4, purpose=purpose), await w.admin())


async def running(w: World, reindex: bool = False) -> str:
    """The run id of a running rewrap (started by an administrator if none is)."""
    status = await w.clinic.call(kv.REWRAP_STATUS, kv.RewrapStatusRequest(), await w.admin())
    if status.state is kv.RewrapState.running and status.reindex == reindex:
        assert status.run_id is not None
        return status.run_id
    if status.state is kv.RewrapState.running:
        await w.clinic.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), await w.admin())
    started = await w.clinic.call(
        kv.REWRAP_START, kv.RewrapStartRequest(reindex=reindex), await w.admin()
    )
    assert started.run_id is not None and started.state is kv.RewrapState.running
    return started.run_id


async def rewrap(
    w: World, run_id: str, rows: list[kv.RewrapRow], owner: str = "records"
) -> list[kv.RewrappedRow]:
    reply = await w.owners[owner].rpc.call(kv.REWRAP, kv.RewrapRequest(run_id=run_id, rows=rows))
    assert len(reply.rows) == len(rows)
    return reply.rows


def rewrap_row(
    row_id: str, fields: dict[str, str], patient: str = PATIENT, **extra: object
) -> kv.RewrapRow:
    return kv.RewrapRow(
        table="patients",
        row_id=row_id,
        binding={"patient": patient},
        fields=fields,
        **extra,
    )


async def decrypts(w: World, row: kv.FieldRow) -> dict[str, str] | None:
    plain, failed = await w.vault.decrypt([row])
    return None if failed else plain[0]


async def test_rewrap_moves_fields_to_an_active_key_for_the_same_context(w: World) -> None:
    (old,) = await encrypt(w, [field_row("r1", identity="Ada Lovelace", mrn="MRN-1")])
    rotated = await rotate(w)
    assert key_of(old["identity"]) in rotated.retired
    run_id = await running(w)
    (moved,) = await rewrap(w, run_id, [rewrap_row("r1", old)])
    assert moved.error is None and set(moved.fields) == {"identity", "mrn"}
    assert all(key_of(c) in rotated.added for c in moved.fields.values())
    assert all(version_of(c) == ciphers.FIELD_VERSION for c in moved.fields.values())
    # ciphertext only: no plaintext anywhere in the reply
    reply = moved.model_dump_json()
    assert "Ada" not in reply and "MRN-1" not in reply
    # the same context and binding decrypt it, and nothing else does
    assert await decrypts(w, field_row("r1", **moved.fields)) == {
        "identity": "Ada Lovelace",
        "mrn": "MRN-1",
    }
    assert await decrypts(w, field_row("r1", OTHER, **moved.fields)) is None
    assert await decrypts(w, field_row("r2", **moved.fields)) is None
    # a field already under an active key is left as it is
    (again,) = await rewrap(w, run_id, [rewrap_row("r1", moved.fields)])
    assert again.error is None and again.fields == {}


async def test_rewrap_is_for_the_tables_owner_only(w: World) -> None:
    (old,) = await encrypt(w, [field_row("o1", identity="x")])
    await rotate(w)
    run_id = await running(w)
    # scheduling's broker identity, taken over, asks to rewrap records' rows
    with pytest.raises(Forbidden):
        await rewrap(w, run_id, [rewrap_row("o1", old)], owner="scheduling")
    # another table in the same call: refused as a whole
    mixed = [
        rewrap_row("o1", old),
        kv.RewrapRow(table="appointments", row_id="a1", fields=old),
    ]
    with pytest.raises(Forbidden):
        await rewrap(w, run_id, mixed)
    # identities that own no table (the gateway, an outsider) may not call it at all
    for identity in ("gateway", "outsider"):
        async with client_runtime(w.settings, f"rw-{identity}", identity) as attacker:
            with pytest.raises(Forbidden):
                await attacker.rpc.call(
                    kv.REWRAP, kv.RewrapRequest(run_id=run_id, rows=[rewrap_row("o1", old)])
                )


async def test_rewrap_only_while_an_administrators_run_is_on(w: World) -> None:
    (old,) = await encrypt(w, [field_row("n1", identity="x")])
    run_id = await running(w)
    with pytest.raises(Conflict):
        await rewrap(w, "00000000-0000-0000-0000-000000000000", [rewrap_row("n1", old)])
    await w.clinic.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), await w.admin())
    with pytest.raises(Conflict):
        await rewrap(w, run_id, [rewrap_row("n1", old)])


async def test_a_changed_binding_moves_nothing(w: World) -> None:
    """A taken-over owner claims another patient for a row: it does not decrypt under
    that claim, so nothing comes back (a rewrap cannot re-bind a row)."""
    (old,) = await encrypt(w, [field_row("b1", identity="Grace Hopper")])
    await rotate(w)
    run_id = await running(w)
    moved, moved_row = await rewrap(
        w, run_id, [rewrap_row("b1", old, OTHER), rewrap_row("b2", old)]
    )
    assert moved.error is not None and moved.fields == {}
    assert moved_row.error is not None and moved_row.fields == {}  # another row id
    # with the true binding it moves, and stays bound to its patient
    (right,) = await rewrap(w, run_id, [rewrap_row("b1", old)])
    assert right.error is None
    assert await decrypts(w, field_row("b1", OTHER, **right.fields)) is None


async def v1_ciphertext(w: World, row_id: str, column: str, text: str) -> str:
    """An envelope of version 1 (no binding in the AAD), as stored before zero trust."""
    key_id = w.vault.active_data_keys[0]
    key = w.vault._keys[key_id]
    nonce = await w.vault._nonce(key)
    header = struct.pack(">BI", 1, key_id) + nonce
    context = ciphers.FieldContext("patients", column, row_id)
    body = key.aead.encrypt(nonce, text.encode(), header + context.encode(1))
    return base64.b64encode(header + body).decode()


async def test_v1_rows_are_upgraded_with_the_owners_binding(w: World) -> None:
    old = await v1_ciphertext(w, "v1row", "identity", "Mary Seacole")
    assert version_of(old) == 1
    run_id = await running(w)
    (moved,) = await rewrap(w, run_id, [rewrap_row("v1row", {"identity": old})])
    assert moved.error is None
    (new,) = moved.fields.values()
    assert version_of(new) == ciphers.FIELD_VERSION
    # bound from now on: another patient's claim no longer decrypts it
    assert await decrypts(w, field_row("v1row", identity=new)) == {"identity": "Mary Seacole"}
    assert await decrypts(w, field_row("v1row", OTHER, identity=new)) is None
    # (a version 1 envelope decrypts under any claimed binding: the upgrade is what ends it)
    assert await decrypts(w, field_row("v1row", OTHER, identity=old)) is not None


def prescription(pk: str, medication: str, patient: str = PATIENT) -> kv.MacRow:
    return kv.MacRow(
        table="prescriptions",
        pk=pk,
        columns=[("patient_id", patient), ("medication_enc", medication), ("status", "active")],
    )


def prescription_rewrap(
    pk: str, medication: str, tag: str, patient: str = PATIENT, row: kv.MacRow | None = None
) -> kv.RewrapRow:
    return kv.RewrapRow(
        table="prescriptions",
        row_id=pk,
        binding={"patient": patient},
        fields={"medication": medication},
        mac=kv.RewrapMac(
            row=row or prescription(pk, medication, patient),
            tag=tag,
            columns={"medication": "medication_enc"},
            binding_columns={"patient": "patient_id"},
        ),
    )


async def stored_prescription(w: World, pk: str) -> tuple[str, str]:
    (cipher,) = await encrypt(
        w,
        [
            kv.FieldRow(
                table="prescriptions",
                row_id=pk,
                fields={"medication": "Amoxicillin 500 mg"},
                binding={"patient": PATIENT},
            )
        ],
    )
    medication = cipher["medication"]
    reply = await w.owners["records"].rpc.call(
        kv.MAC, kv.MacRequest(rows=[prescription(pk, medication)])
    )
    return medication, reply.tags[0]


async def test_remac_only_over_a_row_whose_old_tag_verifies(w: World) -> None:
    medication, tag = await stored_prescription(w, "rx1")
    await rotate(w)
    integrity = await rotate(w, kv.KeyPurpose.integrity)
    run_id = await running(w)
    good, forged, edited, uncovered, rebound = await rewrap(
        w,
        run_id,
        [
            prescription_rewrap("rx1", medication, tag),
            # a made-up tag: no MAC oracle
            prescription_rewrap("rx1", medication, base64.b64encode(b"\x01" * 69).decode()),
            # the row edited (cancelled) under the genuine tag
            prescription_rewrap(
                "rx1",
                medication,
                tag,
                row=kv.MacRow(
                    table="prescriptions",
                    pk="rx1",
                    columns=[
                        ("patient_id", PATIENT),
                        ("medication_enc", medication),
                        ("status", "cancelled"),
                    ],
                ),
            ),
            # the MAC said to cover another ciphertext than the one given
            prescription_rewrap("rx1", medication, tag).model_copy(
                update={"fields": {"medication": tag}}
            ),
            # another patient claimed, with that patient in a made-up MAC row
            prescription_rewrap("rx1", medication, tag, OTHER),
        ],
    )
    for refused in (forged, edited, uncovered, rebound):
        assert refused.error is not None and refused.mac is None and refused.fields == {}
    assert good.error is None and good.mac is not None
    new_medication = good.fields["medication"]
    new_row = prescription("rx1", new_medication)
    assert ciphers.parse_mac(base64.b64decode(good.mac)).key_id in integrity.added
    assert await w.vault.verify_macs([new_row], [good.mac]) == [True]
    # the new tag covers the new ciphertext only, not the old row
    assert await w.vault.verify_macs([prescription("rx1", medication)], [good.mac]) == [False]


def account(account_id: str, role: Role = Role.physician) -> Account:
    now = datetime.now(UTC)
    return Account(
        account_id=account_id,
        username=account_id,
        display_name="Dr Who",
        role=role,
        status=AccountStatus.active,
        public_key=base64.b64encode(b"k" * 32).decode(),
        created_at=now,
        updated_at=now,
    )


async def test_account_rows_are_remacd_only_with_the_keyvaults_own_tag(w: World) -> None:
    """Auth may never MAC an account row on request; a rewrap re-MACs one only because its
    stored tag proves the keyvault made it, and only that very row."""
    row = account_mac_row(account("acc-rewrap"))
    (tag,) = await w.vault.mac([row])
    await rotate(w, kv.KeyPurpose.integrity)
    run_id = await running(w)

    def remac(mac_row: kv.MacRow, mac_tag: str) -> kv.RewrapRow:
        return kv.RewrapRow(
            table="staff_accounts",
            row_id=mac_row.pk,
            mac=kv.RewrapMac(row=mac_row, tag=mac_tag),
        )

    promoted = account_mac_row(account("acc-rewrap", Role.administrator))
    minted = account_mac_row(account("acc-made-up", Role.administrator))
    good, escalated, made_up = await rewrap(
        w, run_id, [remac(row, tag), remac(promoted, tag), remac(minted, tag)], owner="auth"
    )
    assert good.error is None and good.mac is not None
    assert await w.vault.verify_macs([row], [good.mac]) == [True]
    for refused in (escalated, made_up):
        assert refused.error is not None and refused.mac is None
    # records, which owns no account table, gets nothing either
    with pytest.raises(Forbidden):
        await rewrap(w, run_id, [remac(row, tag)], owner="records")


def patient_rewrap(row_id: str, fields: dict[str, str], reindex: bool) -> kv.RewrapRow:
    return rewrap_row(row_id, fields, reindex=reindex)


async def test_blind_indexes_only_as_declared_and_only_in_a_reindexing_run(w: World) -> None:
    identity = json.dumps(
        {
            "given_name": "Amara",
            "family_name": "Okonkwo",
            "date_of_birth": "1984-03-09",
            "sex": "female",
        }
    )
    contact = json.dumps({"phone": "+442079460958", "email": None})
    (old,) = await encrypt(w, [field_row("ix1", identity=identity, contact=contact, mrn="MH-123")])
    # not in a reindexing run: no tokens at all, whatever the row asks
    run_id = await running(w, reindex=False)
    (plain_run,) = await rewrap(w, run_id, [patient_rewrap("ix1", old, reindex=True)])
    assert plain_run.tokens == {}
    await rotate(w, kv.KeyPurpose.blind_index)
    run_id = await running(w, reindex=True)
    (found,) = await rewrap(w, run_id, [patient_rewrap("ix1", old, reindex=True)])
    assert found.error is None
    expected = w.vault.blind_indexes(
        [
            kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field=f, value=v) for f, v in terms])
            for terms in (
                [("mrn", "MH-123")],
                [
                    ("family_name", "Okonkwo"),
                    ("given_name", "Amara"),
                    ("date_of_birth", "1984-03-09"),
                ],
                [("family_name", "Okonkwo"), ("date_of_birth", "1984-03-09")],
                [("phone", "+442079460958")],
                [("family_sound", "Okonkwo"), ("date_of_birth", "1984-03-09")],
                [("family_sound_alt", "Okonkwo"), ("date_of_birth", "1984-03-09")],
            )
        ]
    )
    assert found.tokens["mrn"] == [expected[0]]
    assert found.tokens["identity"] == [expected[1]]
    assert found.tokens["name_dob"] == [expected[2]]
    assert found.tokens["phone"] == [expected[3]]
    assert found.tokens["sounds"] == list(dict.fromkeys(expected[4:]))
    # only the contracts' indexes of patients rows: none for another table
    (other,) = await encrypt(
        w,
        [
            kv.FieldRow(
                table="break_glass",
                row_id="bg1",
                fields={"reason": identity},
                binding={"patient": PATIENT},
            )
        ],
    )
    (none,) = await rewrap(
        w,
        run_id,
        [
            kv.RewrapRow(
                table="break_glass",
                row_id="bg1",
                binding={"patient": PATIENT},
                fields=other,
                reindex=True,
            )
        ],
    )
    assert none.error is None and none.tokens == {}


async def test_lifecycle_steps_need_an_administrators_own_signature_for_that_route(
    w: World,
) -> None:
    admin = await w.admin()
    doctor = await w.clinic.add_staff("rw-doctor", Role.physician)
    status = kv.RewrapStatusRequest()
    # a physician's signature: refused by the keyvault itself (not only at the edge)
    with pytest.raises(Forbidden):
        await w.clinic.call(kv.REWRAP_STATUS, status, doctor)
    # no signature at all, as a taken-over gateway would send it
    with pytest.raises(Unauthenticated):
        await w.clinic.client.rpc.call(kv.REWRAP_STATUS, status, principal=admin.principal)
    # an administrator's signature for another route (their rotation) does not start a rewrap
    proof, body = admin.signed(kv.ROTATE, kv.RotateRequest())
    with pytest.raises(Unauthenticated):
        await w.clinic.client.rpc.call(
            kv.REWRAP_START,
            kv.RewrapStartRequest(),
            principal=admin.principal,
            proof=proof,
            signed_body=body,
        )
    # a captured signature is used once: replayed, it is refused
    proof, body = admin.signed(kv.REWRAP_STATUS, status)
    kwargs = {"principal": admin.principal, "proof": proof, "signed_body": body}
    await w.clinic.client.rpc.call(kv.REWRAP_STATUS, status, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated):
        await w.clinic.client.rpc.call(kv.REWRAP_STATUS, status, **kwargs)  # type: ignore[arg-type]
    # and the owners' own methods are theirs: an administrator's client may not call them
    with pytest.raises(Forbidden):
        await w.clinic.client.rpc.call(kv.REWRAP_JOB, kv.RewrapJobRequest())


async def test_a_cancelled_run_tells_its_services_to_stop(w: World) -> None:
    run_id = await running(w)
    await w.clinic.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), await w.admin())
    reply = await w.owners["chat"].rpc.call(
        kv.REWRAP_REPORT, kv.RewrapReportRequest(run_id=run_id, tables=[], done=True)
    )
    assert reply.state is kv.RewrapState.cancelled
    # a service reports only its own tables
    run_id = await running(w)
    with pytest.raises(Forbidden):
        await w.owners["chat"].rpc.call(
            kv.REWRAP_REPORT,
            kv.RewrapReportRequest(run_id=run_id, tables=[kv.TableProgress(table="patients")]),
        )
    await w.clinic.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), await w.admin())
