"""FHIR Bulk Data `$export` of every resource type, in pages, end to end (real processes,
real signatures, two administrators, the recipient's private key): every line of every
file validates with `fhir.resources` and Medplum's npm validator; the run walks the
patients page by page with advancing `X-Progress`; a records process killed mid-way
leaves only sealed pages, and a new one resumes the job to a complete, duplicate-free
export; `_type` and `_since` restrict it; the keyvault serves a page only for an
approved job, and never an earlier page again."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
from fhir.resources.R4B import get_fhir_model_class
from nacl.public import PrivateKey, SealedBox

from contracts import fhirexport as fx
from contracts import keyvault as kv
from mesh.errors import Forbidden
from mesh.httpsig import sign_request
from tests.gateway.support import Mesh, Staff, mesh, prescribe_from_catalog
from tests.gateway.test_fhir import npm_validate
from tests.mesh.fixtures import client_runtime
from tests.processes import Process, running
from tests.support.polling import until_sync

FHIR = "/fhir/R4"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
PAGE = 3
PATIENTS = 11
"""Four pages of three (the last one short)."""
RECORDS_ENV = {
    "MEDIHAVEN_FHIR_EXPORT_PAGE": str(PAGE),
    # A pause between pages, so that a test sees the run mid-way (and can stop it there).
    "MEDIHAVEN_FHIR_EXPORT_PAGE_DELAY_S": "0.6",
}
PROGRESS = re.compile(r"(\d+) of (\d+)")


@dataclass
class World:
    mesh: Mesh
    logs: Path
    records: list[Process] = field(default_factory=list)

    def start_records(self) -> Process:
        proc = Process("services.records", self.mesh.settings, self.logs, **RECORDS_ENV)
        proc.wait_ready()
        self.records.append(proc)
        return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("bulklogs")
    with (
        mesh("fhirbulk", logs, MEDIHAVEN_RATE_PATIENT_CAPACITY="1000") as m,
        running(["services.scheduling"], m.settings, logs),
    ):
        w = World(m, logs)
        w.start_records()
        try:
            yield w
        finally:
            for proc in w.records:
                proc.stop()


@dataclass
class Clinic:
    first: Staff
    second: Staff
    desk: Staff
    doctor: Staff
    patients: list[str]
    families: list[str]
    mrns: list[str]
    charted: str
    prescription_id: str


def _book(desk: Staff, patient_id: str, doctor: Staff, hours: int, reason: str) -> str:
    start = (datetime.now(UTC) + timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    booked = desk.client.post(
        "/api/v1/appointments",
        {
            "patient_id": patient_id,
            "physician_id": doctor.account_id,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "reason": reason,
        },
    )
    return str(booked["appointment_id"])


def _encounter(doctor: Staff, patient_id: str, hours_ago: int, **content: Any) -> str:
    written = doctor.client.post(
        f"/api/v1/patients/{patient_id}/encounters",
        {
            "content": {
                "occurred_at": (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat(),
                "chief_complaint": "Dry cough",
                **content,
            }
        },
    )
    return str(written["encounter_id"])


def _prescribe(admin: Staff, doctor: Staff, patient_id: str, encounter_id: str) -> str:
    prescribed = prescribe_from_catalog(admin, doctor, patient_id, encounter_id)
    return str(prescribed["prescription_id"])


@pytest.fixture(scope="module")
def clinic(world: World) -> Clinic:
    """Eleven patients; one with a full chart (an encounter with vital signs, a diagnosis
    and an allergy, a signed prescription, an appointment), one more booked."""
    m = world.mesh
    first, second = m.admin(), m.staff("administrator")
    desk, doctor = m.staff("receptionist"), m.staff("physician")
    desk.client.put(
        f"/api/v1/physicians/{doctor.account_id}/working-hours",
        {"weekly": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in WEEKDAYS]},
    )
    families, patients = [], []
    for n in range(PATIENTS):
        family = f"Bulkfam{n}{uuid.uuid4().hex[:5]}"
        written = desk.client.post(
            "/api/v1/patients",
            {
                "demographics": {
                    "given_name": "Noor",
                    "family_name": family,
                    "date_of_birth": f"1990-01-{n + 1:02d}",
                    "sex": "female",
                    "phone": f"+44 20 7946 1{n:03d}",
                }
            },
        )
        families.append(family)
        patients.append(str(written["patient_id"]))
    mrns = [str(desk.client.get(f"/api/v1/patients/{p}")["mrn"]) for p in patients]
    charted = patients[PATIENTS // 2]
    _book(desk, charted, doctor, 2, "wheezing at night")
    _book(desk, patients[0], doctor, 3, "follow-up")
    encounter = _encounter(
        doctor,
        charted,
        3,
        diagnoses=[{"code": "J45.9", "description": "Asthma, unspecified"}],
        vital_signs={"heart_rate": {"value": 91}, "oxygen_saturation": {"value": 95}},
        allergies=[{"substance": "Penicillin", "reaction": "rash", "severity": "moderate"}],
    )
    prescription = _prescribe(first, doctor, charted, encounter)
    return Clinic(first, second, desk, doctor, patients, families, mrns, charted, prescription)


def _signed(m: Mesh, who: Staff, method: str, path: str, body: Any = None) -> httpx.Response:
    uri = m.url + path
    content = b"" if body is None else json.dumps(body).encode()
    headers = sign_request(who.client.private_key, who.client.key_id, method, uri, content)
    if body is not None:
        headers["Content-Type"] = "application/json"
    return httpx.request(method, uri, content=content, headers=headers, timeout=10)


def _start(c: Clinic, m: Mesh, key: PrivateKey, query: str = "") -> str:
    """Kick-off by one administrator, approval by the other; the job id."""
    recipient = base64.b64encode(bytes(key.public_key)).decode()
    kicked = _signed(
        m, c.first, "POST", f"{FHIR}/Patient/$export{query}", {"recipient_public_key": recipient}
    )
    assert kicked.status_code == 202, kicked.text
    job_id = kicked.headers["Content-Location"].rsplit("/", 1)[1]
    approved = _signed(m, c.second, "POST", f"{FHIR}/$export-approval/{job_id}", {})
    assert approved.status_code == 202, approved.text
    return job_id


@dataclass
class Polled:
    manifest: dict[str, Any] | None = None
    progress: list[str] = field(default_factory=list)


def _poll(who: Staff, job_id: str, polled: Polled) -> bool:
    response = who.client.request("GET", f"{FHIR}/$export-status/{job_id}")
    if response.status_code == 200:
        polled.manifest = response.json()
        return True
    assert response.status_code == 202, response.text
    polled.progress.append(response.headers["X-Progress"])
    return False


def _complete(who: Staff, job_id: str, timeout: float = 90.0) -> Polled:
    polled = Polled()
    assert until_sync(lambda: _poll(who, job_id, polled), timeout, interval=0.1), polled.progress
    return polled


def _done(progress: list[str]) -> list[int]:
    return [int(found.group(1)) for p in progress if (found := PROGRESS.search(p))]


def _opened(who: Staff, manifest: dict[str, Any], key: PrivateKey) -> dict[str, list[Any]]:
    """Every file (one per type and page), fetched sealed and opened with the recipient's
    private key; each line parsed by fhir.resources (R4B)."""
    found: dict[str, list[Any]] = {}
    box = SealedBox(key)
    for output in manifest["output"]:
        response = who.client.request("GET", FHIR + output["url"].split(FHIR, 1)[1])
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in box.decrypt(response.content).decode().splitlines()]
        assert len(lines) == output["count"]
        for resource in lines:
            assert resource["resourceType"] == output["type"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        found.setdefault(output["type"], []).extend(lines)
    return found


def _stored(m: Mesh, job_id: str) -> tuple[str, bytes, int]:
    """The job's state, every byte of its rows and how many files it has, read straight
    from the records database."""
    settings = m.settings
    connection = pymysql.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value(),
        database=settings.database("records"),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM fhir_export_jobs WHERE job_id = %s", (job_id,))
            jobs = list(cursor.fetchall())
            cursor.execute("SELECT state FROM fhir_export_jobs WHERE job_id = %s", (job_id,))
            (state,) = cursor.fetchone() or ("",)
            cursor.execute("SELECT * FROM fhir_export_files WHERE job_id = %s", (job_id,))
            files = list(cursor.fetchall())
    finally:
        connection.close()
    stored = b"".join(
        v if isinstance(v, bytes) else str(v).encode() for row in jobs + files for v in row
    )
    return str(state), stored, len(files)


def _no_plaintext(c: Clinic, stored: bytes) -> None:
    for secret in (*c.families, *c.mrns, "Dry cough", "Penicillin", "wheezing", "7946"):
        assert secret.encode() not in stored, secret


def test_every_resource_type_is_exported_in_pages_and_validates(
    world: World, clinic: Clinic, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    job_id = _start(clinic, world.mesh, key)
    polled = _complete(clinic.first, job_id)
    manifest = polled.manifest
    assert manifest is not None
    # The progress advanced page by page while it ran.
    done = _done(polled.progress)
    assert done == sorted(done), polled.progress
    assert len(set(done)) >= 3, polled.progress
    assert {o["type"] for o in manifest["output"]} == set(fx.EXPORT_TYPES)
    parts = [o for o in manifest["output"] if o["type"] == "Patient"]
    assert len(parts) == -(-PATIENTS // PAGE)  # one Patient file per page

    files = _opened(clinic.first, manifest, key)
    ids = [p["id"] for p in files["Patient"]]
    assert sorted(ids) == sorted(clinic.patients)  # each once
    assert [a["code"]["text"] for a in files["AllergyIntolerance"]] == ["Penicillin"]
    (request,) = files["MedicationRequest"]
    (provenance,) = files["Provenance"]
    assert request["id"] == clinic.prescription_id
    assert provenance["target"] == [{"reference": f"MedicationRequest/{clinic.prescription_id}"}]
    assert provenance["signature"][0]["data"]
    reasons = sorted(a["reasonCode"][0]["text"] for a in files["Appointment"])
    assert reasons == ["follow-up", "wheezing at night"]
    assert any(c["code"]["coding"][0]["code"] == "J45.9" for c in files["Condition"])
    assert files["Observation"] and files["Encounter"]
    # Medplum's validator (npm) on every line of every file: zero problems.
    npm_validate([r for lines in files.values() for r in lines], tmp_path)

    state, stored, count = _stored(world.mesh, job_id)
    assert state == "complete" and count == len(manifest["output"])
    _no_plaintext(clinic, stored)


def test_an_export_survives_a_restart_of_records_mid_way(world: World, clinic: Clinic) -> None:
    """Records is killed (SIGKILL) after its first sealed page: the database holds the
    sealed pages and the cursor, never plaintext; a new records process takes the job
    over once the dead run's lease lapses and completes it, every patient exactly once."""
    key = PrivateKey.generate()
    job_id = _start(clinic, world.mesh, key)
    seen = Polled()

    def one_page_sealed() -> bool:
        assert not _poll(clinic.first, job_id, seen), "completed before it could be stopped"
        return any(0 < d < PATIENTS for d in _done(seen.progress[-1:]))

    assert until_sync(one_page_sealed, 30, interval=0.05), seen.progress
    world.records[-1].stop(signal.SIGKILL)
    state, stored, count = _stored(world.mesh, job_id)
    assert state == "running" and 1 <= count
    _no_plaintext(clinic, stored)
    before = _done(seen.progress)[-1]

    world.start_records()
    polled = _complete(clinic.first, job_id, timeout=fx.LEASE_S + 60)
    assert polled.manifest is not None
    after = _done(polled.progress)
    assert all(d >= before for d in after), (before, after)  # resumed, not restarted
    files = _opened(clinic.first, polled.manifest, key)
    assert sorted(p["id"] for p in files["Patient"]) == sorted(clinic.patients)
    (request,) = files["MedicationRequest"]
    assert request["id"] == clinic.prescription_id
    state, stored, _ = _stored(world.mesh, job_id)
    assert state == "complete"
    _no_plaintext(clinic, stored)


def test_type_restricts_the_export_and_an_unknown_type_is_a_400(
    world: World, clinic: Clinic
) -> None:
    m = world.mesh
    key = PrivateKey.generate()
    job_id = _start(clinic, m, key, "?_type=Patient,Appointment")
    polled = _complete(clinic.first, job_id)
    assert polled.manifest is not None
    assert {o["type"] for o in polled.manifest["output"]} == {"Patient", "Appointment"}
    assert polled.manifest["request"].endswith("$export?_type=Patient%2CAppointment")
    files = _opened(clinic.first, polled.manifest, key)
    assert len(files["Patient"]) == PATIENTS

    recipient = base64.b64encode(bytes(key.public_key)).decode()
    for query, said in (
        ("?_type=Patient,Medication", "Medication"),
        ("?_type=Patient,Patient", "twice"),
        ("?_since=2026-01-01T00:00:00", "time zone"),
        ("?_elements=id", "_elements"),
    ):
        refused = _signed(
            m,
            clinic.first,
            "POST",
            f"{FHIR}/Patient/$export{query}",
            {"recipient_public_key": recipient},
        )
        assert refused.status_code == 400, (query, refused.text)
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert said in outcome["issue"][0]["diagnostics"], outcome


def test_since_exports_only_what_changed_after_it(world: World, clinic: Clinic) -> None:
    since = datetime.now(UTC)
    time.sleep(0.01)  # the changes below are stamped strictly after `since`
    booked = _book(clinic.desk, clinic.patients[1], clinic.doctor, 4, "blood test")
    encounter = _encounter(clinic.doctor, clinic.charted, 1, diagnoses=[{"code": "R06.2"}])
    moved = clinic.patients[2]
    current = clinic.desk.client.get(f"/api/v1/patients/{moved}")
    clinic.desk.client.put(
        f"/api/v1/patients/{moved}",
        {
            "expected_version": current["version"],
            "demographics": {**current["demographics"], "email": "moved@example.org"},
        },
    )
    key = PrivateKey.generate()
    stamp = since.isoformat().replace("+00:00", "Z")
    job_id = _start(clinic, world.mesh, key, f"?_since={stamp}")
    polled = _complete(clinic.first, job_id)
    assert polled.manifest is not None
    files = _opened(clinic.first, polled.manifest, key)
    assert set(files) == {"Patient", "Encounter", "Condition", "Appointment"}, set(files)
    assert [p["id"] for p in files["Patient"]] == [moved]
    assert [a["id"] for a in files["Appointment"]] == [booked]
    assert [e["id"] for e in files["Encounter"]] == [encounter]
    assert [c["code"]["coding"][0]["code"] for c in files["Condition"]] == ["R06.2"]


def test_the_capability_statement_says_what_since_means_per_type(world: World) -> None:
    statement = httpx.get(world.mesh.url + FHIR + "/metadata", timeout=10).json()
    (rest,) = statement["rest"]
    by_type = {r["type"]: r for r in rest["resource"]}
    for kind, means in fx.SINCE_MEANS.items():
        assert means in by_type[kind]["documentation"], kind
    (export,) = by_type["Patient"]["operation"][1:]
    assert "_type" in export["documentation"] and "_since" in export["documentation"]


def test_the_keyvault_serves_pages_only_of_an_approved_export_and_never_again(
    world: World, clinic: Clinic
) -> None:
    """A taken-over records service asks the keyvault for export pages itself: not for a
    job two administrators have not approved, not for a patient's insurance or flags,
    and not for a page an approved export has already walked past."""
    m = world.mesh
    key = PrivateKey.generate()
    recipient = base64.b64encode(bytes(key.public_key)).decode()
    kicked = _signed(
        m, clinic.first, "POST", f"{FHIR}/Patient/$export", {"recipient_public_key": recipient}
    )
    pending = kicked.headers["Content-Location"].rsplit("/", 1)[1]
    done = _start(clinic, m, key, "?_type=Patient")
    _complete(clinic.first, done)
    lowest = min(clinic.patients)

    def page(job_id: str, first: str, patient: str, column: str = "mrn") -> fx.ExportDecryptRequest:
        row = kv.FieldRow(
            table="patients", row_id=patient, fields={column: "x"}, binding={"patient": patient}
        )
        return fx.ExportDecryptRequest(job_id=job_id, page_first=first, rows=[row])

    top = max(clinic.patients)
    attempts = [
        (page(pending, lowest, lowest), "have not approved"),
        (page(done, top, top, "insurance"), "identity and contact only"),
        (page(done, lowest, lowest), "that page is done"),
        (page(done, top, lowest), "before the page's first patient"),
    ]

    async def attack() -> list[str]:
        refusals = []
        async with client_runtime(m.settings, "taken-over-records", "records") as records:
            for request, _ in attempts:
                with pytest.raises(Forbidden) as refused:
                    await records.rpc.call(fx.EXPORT_DECRYPT, request)
                refusals.append(refused.value.message)
        return refusals

    for message, (_, why) in zip(asyncio.run(attack()), attempts, strict=True):
        assert why in message, message


def test_the_command_line_fetches_every_page_of_a_restricted_export(
    world: World, clinic: Clinic, tmp_path: Path
) -> None:
    """`medihaven fhir export start --type …`, approved by another administrator's CLI;
    `fetch` opens every page's file and joins them into one NDJSON file per type."""
    from typer.testing import CliRunner

    from cli.main import app
    from tests.processes import process_env

    m = world.mesh
    runner = CliRunner()
    envs = []
    for name in ("one", "two"):
        env = process_env(
            m.settings, MEDIHAVEN_HOME=str(tmp_path / name), MEDIHAVEN_PASSPHRASE="pass phrase!"
        )
        token = clinic.first.client.post("/api/v1/tokens", {"role": "administrator"})["token"]
        registered = runner.invoke(
            app,
            [
                *(
                    "register",
                    "--token",
                    token,
                    "--username",
                    f"bulk-{name}-{uuid.uuid4().hex[:6]}",
                ),
                *("--display-name", f"Admin {name}", "--url", m.url),
            ],
            env=env,
        )
        assert registered.exit_code == 0, registered.output
        envs.append(env)
    one, two = envs
    key_file = tmp_path / "recipient.key"
    made = runner.invoke(app, ["fhir", "export", "recipient-key", "--out", str(key_file)], env=one)
    assert made.exit_code == 0, made.output
    started = runner.invoke(
        app,
        [
            "fhir",
            "export",
            "start",
            "--recipient",
            made.output.strip(),
            "--type",
            "Patient,Appointment",
        ],
        env=one,
    )
    assert started.exit_code == 0, started.output
    job_id = json.loads(started.output)["job_id"]
    approved = runner.invoke(app, ["fhir", "export", "approve", job_id], env=two)
    assert approved.exit_code == 0, approved.output
    out = tmp_path / "opened"
    fetched = runner.invoke(
        app, ["fhir", "export", "fetch", job_id, "--key", str(key_file), "--out", str(out)], env=one
    )
    assert fetched.exit_code == 0, fetched.output
    assert f"Patient: {PATIENTS} resources" in fetched.output
    assert sorted(p.name for p in out.iterdir()) == ["Appointment.ndjson", "Patient.ndjson"]
    patients = [json.loads(line) for line in (out / "Patient.ndjson").read_text().splitlines()]
    assert sorted(p["id"] for p in patients) == sorted(clinic.patients)
    for line in (out / "Appointment.ndjson").read_text().splitlines():
        get_fhir_model_class("Appointment").model_validate(json.loads(line))


def test_an_export_whose_approval_expires_mid_way_fails_and_keeps_no_file(
    world: World, clinic: Clinic
) -> None:
    """The keyvault's session lapses after the first page (its expiry moved into the past
    in the keyvault's own table): the next page is refused by the keyvault, the job fails
    with that sentence as a 422 OperationOutcome, and its sealed pages are deleted."""
    m = world.mesh
    job_id = _start(clinic, m, PrivateKey.generate())
    seen = Polled()

    def one_page_sealed() -> bool:
        assert not _poll(clinic.first, job_id, seen), "completed before its session lapsed"
        return any(0 < d < PATIENTS for d in _done(seen.progress[-1:]))

    assert until_sync(one_page_sealed, 30, interval=0.05), seen.progress
    settings = m.settings
    connection = pymysql.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value(),
        database=settings.database("keyvault"),
        autocommit=True,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE export_sessions SET expires_at = '2000-01-01' WHERE job_id = %s", (job_id,)
            )
    finally:
        connection.close()

    found: list[httpx.Response] = []

    def failed() -> bool:
        response = clinic.first.client.request("GET", f"{FHIR}/$export-status/{job_id}")
        if response.status_code == 202:
            return False
        found.append(response)
        return True

    assert until_sync(failed, 30), "the export went on after its approval expired"
    (response,) = found
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "its approval has expired" in outcome["issue"][0]["diagnostics"]
    state, _, count = _stored(m, job_id)
    assert (state, count) == ("failed", 0)
