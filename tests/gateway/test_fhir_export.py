"""FHIR Bulk Data `$export` end to end (real processes, real signatures, real keyvault):
two administrators, progress, the recipient opens each sealed NDJSON file with its
private key and every line validates with `fhir.resources`; one administrator cannot
export, not even by signing both the kick-off and the approval and going around records
straight to the keyvault; the job's tables hold no plaintext; each patient is audited."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
from fhir.resources.R4B import get_fhir_model_class
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from contracts import fhirexport as fx
from contracts import keyvault as kv
from mesh.errors import Forbidden
from mesh.httpsig import RequestProof, proof_from_headers, sign_request
from tests.gateway.support import Mesh, Staff, mesh
from tests.mesh.fixtures import client_runtime
from tests.processes import running

FHIR = "/fhir/R4"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("exportlogs")
    with (
        mesh("gwexport", logs) as m,
        running(["services.records", "services.scheduling"], m.settings, logs),
    ):
        yield m


@dataclass
class Clinic:
    first: Staff
    second: Staff
    doctor: Staff
    in_care: str
    other: str
    family_names: tuple[str, str]
    mrns: tuple[str, str]


def _patient(family: str, phone: str) -> dict[str, Any]:
    return {
        "given_name": "Ines",
        "family_name": family,
        "date_of_birth": "1979-11-02",
        "sex": "female",
        "phone": phone,
        "email": f"{family.lower()}@example.org",
    }


@pytest.fixture(scope="module")
def clinic(world: Mesh) -> Clinic:
    """Two patients; one booked with a physician who recorded an encounter (vital signs,
    a diagnosis); two administrators."""
    first = world.admin()
    second = world.staff("administrator")
    desk, doctor = world.staff("receptionist"), world.staff("physician")
    families = (f"Quartermain{uuid.uuid4().hex[:4]}", f"Vasquezova{uuid.uuid4().hex[:4]}")
    in_care = desk.client.post(
        "/api/v1/patients", {"demographics": _patient(families[0], "+44 20 7946 0101")}
    )["patient_id"]
    other = desk.client.post(
        "/api/v1/patients", {"demographics": _patient(families[1], "+44 20 7946 0202")}
    )["patient_id"]
    mrns = tuple(desk.client.get(f"/api/v1/patients/{p}")["mrn"] for p in (in_care, other))
    desk.client.put(
        f"/api/v1/physicians/{doctor.account_id}/working-hours",
        {"weekly": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in WEEKDAYS]},
    )
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    desk.client.post(
        "/api/v1/appointments",
        {
            "patient_id": in_care,
            "physician_id": doctor.account_id,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "reason": "cough",
        },
    )
    doctor.client.post(
        f"/api/v1/patients/{in_care}/encounters",
        {
            "content": {
                "occurred_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
                "chief_complaint": "Dry cough",
                "diagnoses": [{"code": "J45.9", "description": "Asthma, unspecified"}],
                "vital_signs": {"heart_rate": {"value": 91}, "oxygen_saturation": {"value": 95}},
                "allergies": [{"substance": "Latex", "reaction": "hives", "severity": "mild"}],
            }
        },
    )
    return Clinic(first, second, doctor, in_care, other, families, (mrns[0], mrns[1]))


def _signed(
    world: Mesh, who: Staff, method: str, path: str, body: Any = None
) -> tuple[httpx.Response, RequestProof, bytes]:
    """Send a signed request; return the response and the proof as the gateway forwards it."""
    uri = world.url + path
    content = b"" if body is None else json.dumps(body).encode()
    headers = sign_request(who.client.private_key, who.client.key_id, method, uri, content)
    proof = proof_from_headers(method, uri, headers)
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = httpx.request(method, uri, content=content, headers=headers, timeout=10)
    return response, proof, content


def _kickoff(
    world: Mesh, who: Staff, path: str, key: PrivateKey
) -> tuple[str, RequestProof, bytes]:
    recipient = base64.b64encode(bytes(key.public_key)).decode()
    response, proof, body = _signed(
        world, who, "POST", FHIR + path, {"recipient_public_key": recipient}
    )
    assert response.status_code == 202, response.text
    location = response.headers["Content-Location"]
    job_id = location.rsplit("/", 1)[1]
    assert location == f"{world.url}{FHIR}/$export-status/{job_id}"
    assert job_id == fx.kickoff_digest(proof.signature_input, proof.signature)
    return job_id, proof, body


def _until_complete(who: Staff, job_id: str) -> tuple[dict[str, Any], list[str]]:
    """Poll the status (202 + X-Progress) until the manifest, with a deadline."""
    progress: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = who.client.request("GET", f"{FHIR}/$export-status/{job_id}")
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("application/json")
            return response.json(), progress
        assert response.status_code == 202, response.text
        progress.append(response.headers["X-Progress"])
        time.sleep(0.05)
    raise AssertionError(f"the export did not complete; progress seen: {progress}")


def _opened(who: Staff, manifest: dict[str, Any], key: PrivateKey) -> dict[str, list[Any]]:
    """Each output file, fetched sealed and opened with the recipient's private key; each
    line validated by fhir.resources."""
    found: dict[str, list[Any]] = {}
    for output in manifest["output"]:
        path = output["url"].split(FHIR, 1)[1]
        response = who.client.request("GET", FHIR + path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        ndjson = SealedBox(key).decrypt(response.content).decode()
        lines = [json.loads(line) for line in ndjson.splitlines()]
        assert len(lines) == output["count"]
        for resource in lines:
            assert resource["resourceType"] == output["type"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        found[output["type"]] = lines
    return found


def _audited(who: Staff, patient_id: str, job_id: str) -> bool:
    """An `export.patient` event names the patient and the job (polled with a deadline)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        page = who.client.get("/api/v1/audit/events", patient_id=patient_id, type="export.patient")
        if any(e["event"]["entity_id"] == job_id for e in page["entries"]):
            return True
        time.sleep(0.2)
    return False


def test_two_administrators_export_every_patient_sealed_to_the_recipient(
    world: Mesh, clinic: Clinic
) -> None:
    key = PrivateKey.generate()
    job_id, _, _ = _kickoff(world, clinic.first, "/Patient/$export", key)
    waiting = clinic.first.client.request("GET", f"{FHIR}/$export-status/{job_id}")
    assert waiting.status_code == 202
    assert "approval" in waiting.headers["X-Progress"]

    approved, _, _ = _signed(world, clinic.second, "POST", f"{FHIR}/$export-approval/{job_id}", {})
    assert approved.status_code == 202, approved.text
    manifest, progress = _until_complete(clinic.second, job_id)
    assert progress, "no 202 with X-Progress was seen"
    assert manifest["requiresAccessToken"] is True
    assert manifest["extension"]["requestedBy"] == clinic.first.account_id
    assert manifest["extension"]["approvedBy"] == clinic.second.account_id
    # No prescriptions in this clinic: no MedicationRequest or Provenance file (those are
    # exported in tests/fhir/test_bulk_export.py).
    assert {o["type"] for o in manifest["output"]} == set(fx.EXPORT_TYPES) - {
        "MedicationRequest",
        "Provenance",
    }

    files = _opened(clinic.first, manifest, key)
    exported = {p["id"] for p in files["Patient"]}
    assert {clinic.in_care, clinic.other} <= exported
    names = {p["name"][0]["family"] for p in files["Patient"]}
    assert set(clinic.family_names) <= names
    assert any(
        o["subject"]["reference"] == f"Patient/{clinic.in_care}" for o in files["Observation"]
    )
    assert any(c["code"]["coding"][0]["code"] == "J45.9" for c in files["Condition"])
    assert [a["code"]["text"] for a in files["AllergyIntolerance"]] == ["Latex"]
    assert [a["reasonCode"][0]["text"] for a in files["Appointment"]] == ["cough"]

    # Another key does not open the files.
    stranger = SealedBox(PrivateKey.generate())
    path = manifest["output"][0]["url"].split(FHIR, 1)[1]
    sealed = clinic.first.client.request("GET", FHIR + path).content
    with pytest.raises(CryptoError):
        stranger.decrypt(sealed)

    # Audited per patient exported (the audit service stores events as they arrive).
    for patient_id in (clinic.in_care, clinic.other):
        assert _audited(clinic.first, patient_id, job_id), patient_id

    # The server keeps no plaintext: scan every column of the rows the job wrote.
    connection = pymysql.connect(
        host=world.settings.db_host,
        port=world.settings.db_port,
        user=world.settings.db_user,
        password=world.settings.db_password.get_secret_value(),
        database=world.settings.database("records"),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM fhir_export_jobs WHERE job_id = %s", (job_id,))
            rows = list(cursor.fetchall())
            cursor.execute("SELECT * FROM fhir_export_files WHERE job_id = %s", (job_id,))
            file_rows = list(cursor.fetchall())
    finally:
        connection.close()
    assert len(file_rows) == len(manifest["output"])
    stored = b"".join(
        v if isinstance(v, bytes) else str(v).encode() for row in rows + file_rows for v in row
    )
    # (the phone numbers in full, as typed and as stored: a bare "7946" also stands, by
    # chance, in a hex digest now and then)
    phones = ("7946 0101", "79460101", "7946 0202", "79460202")
    for secret in (*clinic.family_names, *clinic.mrns, "Dry cough", *phones):
        assert secret.encode() not in stored, secret


def test_a_group_export_holds_only_that_physicians_patients_in_care(
    world: Mesh, clinic: Clinic
) -> None:
    key = PrivateKey.generate()
    job_id, _, _ = _kickoff(world, clinic.second, f"/Group/{clinic.doctor.account_id}/$export", key)
    approved, _, _ = _signed(world, clinic.first, "POST", f"{FHIR}/$export-approval/{job_id}", {})
    assert approved.status_code == 202, approved.text
    manifest, _ = _until_complete(clinic.first, job_id)
    files = _opened(clinic.second, manifest, key)
    assert [p["id"] for p in files["Patient"]] == [clinic.in_care]


def test_one_administrator_cannot_export_by_approving_their_own_request(
    world: Mesh, clinic: Clinic
) -> None:
    key = PrivateKey.generate()
    job_id, _, _ = _kickoff(world, clinic.first, "/Patient/$export", key)
    refused, _, _ = _signed(world, clinic.first, "POST", f"{FHIR}/$export-approval/{job_id}", {})
    assert refused.status_code == 403
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "second administrator" in outcome["issue"][0]["diagnostics"]
    still = clinic.first.client.request("GET", f"{FHIR}/$export-status/{job_id}")
    assert still.status_code == 202
    assert "approval" in still.headers["X-Progress"]


def test_the_keyvault_refuses_one_administrators_export_even_from_records(
    world: Mesh, clinic: Clinic
) -> None:
    """A taken-over records service holding one administrator's signed kick-off and that
    same administrator's signed approval goes straight to the keyvault: refused. So is an
    approval without the kick-off, and one of another kick-off."""
    key = PrivateKey.generate()
    job_id, kickoff, kickoff_body = _kickoff(world, clinic.first, "/Patient/$export", key)
    other_job, _, _ = _kickoff(world, clinic.second, "/Patient/$export", key)
    countersigned = kv.Countersigned(
        proof=kickoff.model_dump_json(), body=base64.b64encode(kickoff_body).decode()
    )
    row = kv.FieldRow(
        table="patients",
        row_id=clinic.other,
        fields={"mrn": "x"},
        binding={"patient": clinic.other},
    )

    def approval(who: Staff, job: str) -> RequestProof:
        uri = f"{world.url}{FHIR}/$export-approval/{job}"
        headers = sign_request(who.client.private_key, who.client.key_id, "POST", uri, b"{}")
        return proof_from_headers("POST", uri, headers)

    attempts = [
        (approval(clinic.first, job_id), countersigned, "different one approves"),
        (approval(clinic.second, job_id), None, "without the kick-off"),
        (approval(clinic.second, other_job), countersigned, "names another kick-off"),
    ]

    async def attack() -> list[str]:
        refusals = []
        async with client_runtime(world.settings, "taken-over-records", "records") as records:
            for proof, signed_kickoff, _ in attempts:
                request = kv.DecryptRequest(rows=[row], countersigned=signed_kickoff)
                with pytest.raises(Forbidden) as refused:
                    await records.rpc.call(
                        kv.DECRYPT, request, proof=proof.model_dump_json(), signed_body=b"{}"
                    )
                refusals.append(refused.value.message)
        return refusals

    for message, (_, _, why) in zip(asyncio.run(attack()), attempts, strict=True):
        assert why in message, message


def test_a_kickoff_needs_a_usable_recipient_key(world: Mesh, clinic: Clinic) -> None:
    refused, _, _ = _signed(
        world, clinic.first, "POST", f"{FHIR}/Patient/$export", {"recipient_public_key": "abc"}
    )
    assert 400 <= refused.status_code < 500
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_the_command_line_exports_with_two_administrators(
    world: Mesh, clinic: Clinic, tmp_path: Path
) -> None:
    """`medihaven fhir export`: recipient key here, kick-off by one administrator,
    approval by another, progress while it runs, files opened here and valid."""
    from typer.testing import CliRunner

    from cli.main import app
    from tests.processes import process_env

    runner = CliRunner()
    envs = []
    for name in ("one", "two"):
        env = process_env(
            world.settings, MEDIHAVEN_HOME=str(tmp_path / name), MEDIHAVEN_PASSPHRASE="pass phrase!"
        )
        token = clinic.first.client.post("/api/v1/tokens", {"role": "administrator"})["token"]
        registered = runner.invoke(
            app,
            [
                *("register", "--token", token, "--username", f"cli-{name}-{uuid.uuid4().hex[:6]}"),
                *("--display-name", f"Admin {name}", "--url", world.url),
            ],
            env=env,
        )
        assert registered.exit_code == 0, registered.output
        envs.append(env)
    one, two = envs
    key_file = tmp_path / "recipient.key"
    made = runner.invoke(app, ["fhir", "export", "recipient-key", "--out", str(key_file)], env=one)
    assert made.exit_code == 0, made.output
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    started = runner.invoke(
        app, ["fhir", "export", "start", "--recipient", made.output.strip()], env=one
    )
    assert started.exit_code == 0, started.output
    job_id = json.loads(started.output)["job_id"]
    pending = runner.invoke(app, ["fhir", "export", "status", job_id], env=two)
    assert pending.exit_code == 2 and "approval" in pending.output
    itself = runner.invoke(app, ["fhir", "export", "approve", job_id], env=one)
    assert itself.exit_code == 1 and "error 403" in itself.output
    approved = runner.invoke(app, ["fhir", "export", "approve", job_id], env=two)
    assert approved.exit_code == 0, approved.output
    out = tmp_path / "opened"
    fetched = runner.invoke(
        app, ["fhir", "export", "fetch", job_id, "--key", str(key_file), "--out", str(out)], env=one
    )
    assert fetched.exit_code == 0, fetched.output
    assert "Patient:" in fetched.output
    patients = [json.loads(line) for line in (out / "Patient.ndjson").read_text().splitlines()]
    assert {clinic.in_care, clinic.other} <= {p["id"] for p in patients}
    opened = sorted(p.stem for p in out.glob("*.ndjson"))
    assert {"Patient", "Encounter", "Appointment"} <= set(opened)
    for kind in opened:
        for line in (out / f"{kind}.ndjson").read_text().splitlines():
            get_fhir_model_class(kind).model_validate(json.loads(line))
