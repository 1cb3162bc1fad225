"""FHIR R4 at the gateway, against a seeded clinic (real processes, real signatures): every
resource type it returns validated by `fhir.resources` (its R4B models, a validator
nobody here wrote), searches and paging, `$everything`, and refusals (role, care,
unknown parameters, rate limits) as OperationOutcomes."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

from cli.sdk import MedihavenClient
from contracts import fhir
from contracts import records as rec
from contracts.base import Role
from gateway.access import ACCESS
from mesh import fhirmap
from tests.gateway.support import Mesh, Staff, mesh, prescribe_from_catalog
from tests.processes import running

FHIR = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("fhirlogs")
    with (
        mesh("gwfhir", logs, MEDIHAVEN_RATE_PATIENT_CAPACITY="1000") as m,
        running(["services.records", "services.scheduling"], m.settings, logs),
    ):
        yield m


@dataclass
class Seeded:
    desk: Staff
    doctor: Staff
    other_doctor: Staff
    admin: Staff
    patient_id: str
    mrn: str
    encounter_ids: list[str]
    prescription_id: str
    appointment_id: str
    day: str
    returned: list[dict[str, Any]] = field(default_factory=list)
    """Every resource the tests got back (for the validators)."""


PATIENT = {
    "given_name": "Amara",
    "family_name": "Okonkwo",
    "date_of_birth": "1984-03-09",
    "sex": "female",
    "phone": "+44 20 7946 0958",
    "email": "amara@example.org",
    "address": {
        "line1": "1 High Street",
        "postal_code": "N1 9GU",
        "city": "London",
        "country": "GB",
    },
    "emergency_contact": {
        "name": "Obi Okonkwo",
        "relationship": "brother",
        "phone": "+44 20 7946 0000",
    },
}


def _encounter(patient_id: str, hours_ago: int, **content: Any) -> dict[str, Any]:
    return {
        "content": {
            "occurred_at": (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat(),
            "chief_complaint": "Wheezing at night",
            **content,
        }
    }


@pytest.fixture(scope="module")
def clinic(world: Mesh) -> Seeded:
    """A patient booked with a physician, two encounters (vital signs, ICD-10 diagnoses,
    allergies), a signed prescription from the catalog."""
    desk, doctor, other = (
        world.staff("receptionist"),
        world.staff("physician"),
        world.staff("physician"),
    )
    admin = world.admin()
    written = desk.client.post("/api/v1/patients", {"demographics": PATIENT})
    patient_id = written["patient_id"]
    mrn = desk.client.get(f"/api/v1/patients/{patient_id}")["mrn"]
    desk.client.put(
        f"/api/v1/physicians/{doctor.account_id}/working-hours",
        {"weekly": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in WEEKDAYS]},
    )
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    booked = desk.client.post(
        "/api/v1/appointments",
        {
            "patient_id": patient_id,
            "physician_id": doctor.account_id,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "reason": "wheezing at night",
        },
    )
    day = desk.client.get(f"/api/v1/appointments/{booked['appointment_id']}")
    first = doctor.client.post(
        f"/api/v1/patients/{patient_id}/encounters",
        _encounter(
            patient_id,
            30,
            diagnoses=[{"code": "J45.9", "description": "Asthma, unspecified"}],
            vital_signs={
                "blood_pressure": {"systolic": 128, "diastolic": 82},
                "heart_rate": {"value": 88},
                "respiratory_rate": {"value": 18},
                "oxygen_saturation": {"value": 96},
                "temperature": {"value": 37.2, "unit": "Cel"},
                "weight": {"value": 71.5, "unit": "kg"},
                "height": {"value": 168, "unit": "cm"},
            },
            allergies=[{"substance": "Penicillin", "reaction": "rash", "severity": "moderate"}],
        ),
    )
    second = doctor.client.post(
        f"/api/v1/patients/{patient_id}/encounters",
        _encounter(
            patient_id,
            2,
            diagnoses=[{"code": "J45.9"}, {"code": "R06.2"}],
            vital_signs={"heart_rate": {"value": 92}},
        ),
    )
    rx = prescribe_from_catalog(
        admin, doctor, patient_id, second["encounter_id"], instructions="Shake well."
    )
    return Seeded(
        desk,
        doctor,
        other,
        admin,
        patient_id,
        mrn,
        [first["encounter_id"], second["encounter_id"]],
        rx["prescription_id"],
        booked["appointment_id"],
        # Appointment?date= is a day in the clinic's zone, not the UTC date of the start
        datetime.fromisoformat(day["start"])
        .astimezone(ZoneInfo(world.settings.clinic_timezone))
        .date()
        .isoformat(),
    )


def fhir_get(
    clinic: Seeded, who: Staff, path: str, status: int = 200, /, **params: Any
) -> dict[str, Any]:
    """A signed FHIR read; the reply is FHIR JSON with `status`, kept for the validators."""
    response = who.client.request("GET", FHIR + path, params=params)
    assert response.status_code == status, (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith(FHIR_JSON)
    resource: dict[str, Any] = response.json()
    clinic.returned.append(resource)
    return resource


def follow(clinic: Seeded, who: Staff, url: str) -> dict[str, Any]:
    """A paging link, signed as it is (the client signs exactly the link it follows)."""
    parts = urlsplit(url)
    return fhir_get(clinic, who, parts.path.removeprefix(FHIR), **dict(parse_qsl(parts.query)))


def validate(resource: dict[str, Any]) -> None:
    """`fhir.resources` (R4B) parses it (and every resource inside a Bundle) or raises."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    for item in resource.get("entry", []):
        validate(item["resource"])


VALIDATOR = Path(__file__).parent.parent / "fhir"


def npm_validate(returned: list[dict[str, Any]], tmp_path: Path) -> None:
    """Medplum's validator (npm, `tests/fhir`), on the same JSON: zero problems. Its
    packages are installed from the lock file the first time (`make pytest` does too)."""
    if not (VALIDATOR / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=VALIDATOR, check=True, timeout=300
        )
    path = tmp_path / "returned.json"
    path.write_text(json.dumps(returned), encoding="utf-8")
    result = subprocess.run(
        ["node", "validate.mjs", str(path)],
        cwd=VALIDATOR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"checked {len(returned)} resources: 0 problems" in result.stdout


def resources(bundle: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    found = [e["resource"] for e in bundle.get("entry", [])]
    return [r for r in found if kind is None or r["resourceType"] == kind]


def is_outcome(body: dict[str, Any], code: str) -> str:
    assert body["resourceType"] == "OperationOutcome", body
    (issue,) = body["issue"]
    assert issue["severity"] == "error" and issue["code"] == code, issue
    text: str = issue["diagnostics"]
    assert text
    return text


def test_every_resource_type_validates(clinic: Seeded, tmp_path: Path) -> None:
    c, doctor, pid = clinic, clinic.doctor, clinic.patient_id
    patient = fhir_get(c, doctor, f"/Patient/{pid}")
    assert patient["identifier"][0] == {
        "use": "usual",
        "system": "urn:medihaven:mrn",
        "value": c.mrn,
    }
    assert patient["name"][0]["family"] == "Okonkwo" and patient["birthDate"] == "1984-03-09"
    assert {"system": "phone", "value": "+44 20 7946 0958"} in patient["telecom"]

    encounters = fhir_get(c, doctor, "/Encounter", patient=pid)
    assert {r["id"] for r in resources(encounters)} == set(c.encounter_ids)
    one = fhir_get(c, doctor, f"/Encounter/{c.encounter_ids[0]}")
    assert one["subject"] == {"reference": f"Patient/{pid}"} and one["status"] == "finished"

    conditions = fhir_get(c, doctor, "/Condition", patient=f"Patient/{pid}")
    codes = sorted(r["code"]["coding"][0]["code"] for r in resources(conditions))
    assert codes == ["J45.9", "J45.9", "R06.2"]
    assert all(
        r["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
        for r in resources(conditions)
    )

    observations = fhir_get(c, doctor, "/Observation", patient=pid)
    found = resources(observations)
    assert len(found) == 8  # seven vital signs, then a heart rate
    for o in found:
        assert o["category"][0]["coding"][0]["code"] == "vital-signs"
        assert o["code"]["coding"][0]["system"] == "http://loinc.org"
    by_code = {o["code"]["coding"][0]["code"]: o for o in found}
    assert set(by_code) == {"85354-9", "8867-4", "9279-1", "2708-6", "8310-5", "29463-7", "8302-2"}
    bp = by_code["85354-9"]["component"]
    assert [x["code"]["coding"][0]["code"] for x in bp] == ["8480-6", "8462-4"]
    assert bp[0]["valueQuantity"] == {
        "value": 128,
        "unit": "mmHg",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert by_code["8310-5"]["valueQuantity"]["code"] == "Cel"
    assert by_code["29463-7"]["valueQuantity"]["code"] == "kg"

    allergies = fhir_get(c, doctor, "/AllergyIntolerance", patient=pid)
    (allergy,) = resources(allergies)
    assert allergy["code"]["text"] == "Penicillin"
    assert allergy["reaction"][0]["severity"] == "moderate"

    prescriptions = fhir_get(c, doctor, "/MedicationRequest", patient=pid)
    (request,) = resources(prescriptions, "MedicationRequest")
    (provenance,) = resources(prescriptions, "Provenance")
    assert request["status"] == "active" and request["intent"] == "order"
    assert provenance["target"] == [{"reference": f"MedicationRequest/{c.prescription_id}"}]
    assert provenance["signature"][0]["data"]
    assert [e["search"]["mode"] for e in prescriptions["entry"]] == ["match", "include"]
    fhir_get(c, doctor, f"/MedicationRequest/{c.prescription_id}")
    # every match's fullUrl reads that very resource (but an allergy: read through its list)
    for bundle in (conditions, observations, prescriptions, encounters):
        for item in bundle["entry"]:
            path = urlsplit(item["fullUrl"]).path.removeprefix(FHIR)
            assert fhir_get(c, doctor, path) == item["resource"], path

    appointments = fhir_get(
        c, c.desk, "/Appointment", practitioner=f"Practitioner/{c.doctor.account_id}", date=c.day
    )
    (appointment,) = resources(appointments)
    assert appointment["id"] == c.appointment_id and appointment["status"] == "booked"
    assert appointment["reasonCode"] == [{"text": "wheezing at night"}]
    fhir_get(c, doctor, f"/Appointment/{c.appointment_id}")

    practitioners = fhir_get(c, c.desk, "/Practitioner")
    assert c.doctor.account_id in {r["id"] for r in resources(practitioners)}
    fhir_get(c, c.desk, f"/Practitioner/{c.doctor.account_id}")

    events = fhir_get(c, c.admin, "/AuditEvent", patient=pid, _count=5)
    assert events["total"] >= 5 and len(resources(events)) == 5
    assert all(e["entity"][0]["what"]["reference"] == f"Patient/{pid}" for e in resources(events))

    everything = fhir_get(c, doctor, f"/Patient/{pid}/$everything")
    kinds = {r["resourceType"] for r in resources(everything)}
    assert kinds == {
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "AllergyIntolerance",
        "MedicationRequest",
        "Provenance",
    }
    capability = fhir_get(c, doctor, "/metadata")
    assert capability["fhirVersion"] == "4.0.1"
    assert {"Patient", "Observation", "AuditEvent"} <= {
        r["type"] for r in capability["rest"][0]["resource"]
    }
    for resource in c.returned:
        validate(resource)
    kinds_returned = {r["resourceType"] for r in c.returned} | {
        x["resourceType"] for b in c.returned for x in resources(b)
    }
    assert kinds_returned >= {
        "Bundle",
        "CapabilityStatement",
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "AllergyIntolerance",
        "MedicationRequest",
        "Provenance",
        "Appointment",
        "Practitioner",
        "AuditEvent",
    }
    npm_validate(c.returned, tmp_path)


def test_patient_searches_are_exact_through_the_blind_indexes(clinic: Seeded) -> None:
    c, desk = clinic, clinic.desk
    # a namesake that only sounds alike, born the same day
    desk.client.post(
        "/api/v1/patients",
        {
            "demographics": {**PATIENT, "family_name": "Okonkwu", "phone": None, "email": None},
            "confirm_duplicate": True,
        },
    )
    for params in (
        {"identifier": c.mrn},
        {"identifier": f"urn:medihaven:mrn|{c.mrn}"},
        {"family": "OKONKWO", "birthdate": "1984-03-09"},
        {"phone": "0044 20 7946 0958"},
    ):
        bundle = fhir_get(c, desk, "/Patient", **params)
        assert bundle["type"] == "searchset" and bundle["total"] == 1, params
        assert [r["id"] for r in resources(bundle)] == [c.patient_id]
        validate(bundle)
    assert fhir_get(c, desk, "/Patient", family="Okonkwo", birthdate="1984-03-10")["total"] == 0
    assert fhir_get(c, desk, "/Patient", identifier="MH-AAAAAAAA")["total"] == 0
    # not ignored, refused: a parameter this server does not search by, or half a criterion
    for params in (
        {"name": "Amara"},
        {"family": "Okonkwo"},
        {"identifier": f"http://other.example|{c.mrn}"},
        {"identifier": c.mrn, "phone": "0044 20 7946 0958"},
        {"_count": "1000", "identifier": c.mrn},
    ):
        body = fhir_get(c, desk, "/Patient", 400, **params)
        is_outcome(body, "invalid")
    assert "_sort" in is_outcome(fhir_get(c, desk, "/Patient", 400, _sort="name"), "invalid")


def test_searchset_paging_follows_signed_links(clinic: Seeded) -> None:
    c, doctor = clinic, clinic.doctor
    first = fhir_get(c, doctor, "/Observation", patient=c.patient_id, _count=3)
    assert first["total"] == 8 and len(first["entry"]) == 3
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert set(links) == {"self", "first", "next"}
    seen = [r["id"] for r in resources(first)]
    page = first
    while "next" in {link["relation"] for link in page["link"]}:
        url = next(link["url"] for link in page["link"] if link["relation"] == "next")
        page = follow(c, doctor, url)
        assert "previous" in {link["relation"] for link in page["link"]}
        seen += [r["id"] for r in resources(page)]
    assert len(seen) == len(set(seen)) == 8
    assert len(resources(page)) == 2  # 3 + 3 + 2
    only_total = fhir_get(c, doctor, "/Observation", patient=c.patient_id, _count=0)
    assert only_total["total"] == 8 and "entry" not in only_total
    for entry in first["entry"]:
        assert entry["fullUrl"].endswith(f"{FHIR}/Observation/{entry['resource']['id']}")


def test_refusals_are_operation_outcomes(world: Mesh, clinic: Seeded, tmp_path: Path) -> None:
    c, pid = clinic, clinic.patient_id
    # the desk sees no clinical data; a physician without a care relationship no chart
    is_outcome(fhir_get(c, c.desk, "/Observation", 403, patient=pid), "forbidden")
    is_outcome(fhir_get(c, c.desk, f"/Patient/{pid}/$everything", 403), "forbidden")
    for path in (
        f"/Patient/{pid}",
        f"/Patient/{pid}/$everything",
        f"/Encounter/{c.encounter_ids[0]}",
    ):
        is_outcome(fhir_get(c, c.other_doctor, path, 403), "forbidden")
    is_outcome(fhir_get(c, c.other_doctor, "/Condition", 403, patient=pid), "forbidden")
    # administrators: the audit log, no patient data; the audit log is theirs alone
    is_outcome(fhir_get(c, c.admin, f"/Patient/{pid}", 403), "forbidden")
    is_outcome(fhir_get(c, c.doctor, "/AuditEvent", 403), "forbidden")
    # unknown ids and paths, unsigned requests
    is_outcome(fhir_get(c, c.doctor, f"/Patient/{uuid.uuid4()}", 403), "forbidden")
    is_outcome(fhir_get(c, c.desk, f"/Patient/{uuid.uuid4()}", 404), "not-found")
    is_outcome(fhir_get(c, c.desk, "/Practitioner/nobody", 404), "not-found")
    is_outcome(fhir_get(c, c.desk, "/Medication", 404), "not-found")
    is_outcome(fhir_get(c, c.desk, "/Patient/not-a-uuid", 400), "invalid")
    is_outcome(fhir_get(c, c.doctor, f"/Condition/{c.encounter_ids[0]}-dx9", 404), "not-found")
    is_outcome(fhir_get(c, c.doctor, f"/Observation/{c.encounter_ids[1]}-bp", 404), "not-found")
    is_outcome(fhir_get(c, c.doctor, f"/Observation/{c.encounter_ids[1]}-pulse", 400), "invalid")
    writes = httpx.post(f"{world.url}{FHIR}/Patient", json={"resourceType": "Patient"}, timeout=10)
    assert writes.status_code == 405 and writes.headers["content-type"].startswith(FHIR_JSON)
    is_outcome(writes.json(), "not-supported")
    unsigned = httpx.get(f"{world.url}{FHIR}/Patient/{pid}", timeout=10)
    assert unsigned.status_code == 401
    assert unsigned.headers["content-type"].startswith(FHIR_JSON)
    is_outcome(unsigned.json(), "login")
    # a signature for one patient does not read another's: the signed URI is the request
    response = c.doctor.client.request("GET", f"{FHIR}/Patient/{pid}")
    assert response.status_code == 200
    outcomes = [r for r in c.returned if r["resourceType"] == "OperationOutcome"]
    for body in outcomes:
        validate(body)
    npm_validate(outcomes, tmp_path)


def test_patient_data_reads_draw_the_stricter_bucket(world: Mesh, clinic: Seeded) -> None:
    small = world.extra_gateway(
        MEDIHAVEN_RATE_PATIENT_CAPACITY="3", MEDIHAVEN_RATE_PATIENT_PER_S="0.01"
    )
    desk = world.staff("receptionist")
    client = MedihavenClient(small.url, desk.account_id, desk.client.private_key)
    statuses = [
        client.request("GET", f"{FHIR}/Patient", params={"identifier": clinic.mrn})
        for _ in range(5)
    ]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    refused = statuses[-1]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    is_outcome(refused.json(), "throttled")
    # the directory is not patient data: the general bucket only
    assert client.request("GET", f"{FHIR}/Practitioner").status_code == 200


def test_role_matrix(clinic: Seeded) -> None:
    """Every FHIR interaction for every role: allowed (never 403, never 5xx) or an
    OperationOutcome 403, as the contracts say (`gateway.access.ACCESS`)."""
    c, pid = clinic, clinic.patient_id
    paths = {
        fhir.PATIENT_READ.name: f"/Patient/{pid}",
        fhir.PATIENT_SEARCH.name: f"/Patient?identifier={c.mrn}",
        fhir.EVERYTHING.name: f"/Patient/{pid}/$everything",
        fhir.ENCOUNTER_READ.name: f"/Encounter/{c.encounter_ids[0]}",
        fhir.ENCOUNTER_SEARCH.name: f"/Encounter?patient={pid}",
        fhir.CONDITION_SEARCH.name: f"/Condition?patient={pid}",
        fhir.CONDITION_READ.name: f"/Condition/{c.encounter_ids[0]}-dx1",
        fhir.OBSERVATION_SEARCH.name: f"/Observation?patient={pid}",
        fhir.OBSERVATION_READ.name: f"/Observation/{c.encounter_ids[0]}-bp",
        fhir.PROVENANCE_READ.name: f"/Provenance/{c.prescription_id}",
        fhir.ALLERGY_SEARCH.name: f"/AllergyIntolerance?patient={pid}",
        fhir.MEDICATION_REQUEST_READ.name: f"/MedicationRequest/{c.prescription_id}",
        fhir.MEDICATION_REQUEST_SEARCH.name: f"/MedicationRequest?patient={pid}",
        fhir.APPOINTMENT_READ.name: f"/Appointment/{c.appointment_id}",
        fhir.APPOINTMENT_SEARCH.name: (
            f"/Appointment?practitioner={c.doctor.account_id}&date={c.day}"
        ),
        fhir.PRACTITIONER_READ.name: f"/Practitioner/{c.doctor.account_id}",
        fhir.PRACTITIONER_SEARCH.name: "/Practitioner",
        fhir.AUDIT_EVENT_SEARCH.name: "/AuditEvent",
    }
    assert set(paths) == {m.name for m in fhir.ROUTED}
    members = {"administrator": c.admin, "physician": c.doctor, "receptionist": c.desk}
    for name, path in paths.items():
        for role, member in members.items():
            where, _, query = path.partition("?")
            response = member.client.request("GET", FHIR + where, params=dict(parse_qsl(query)))
            assert response.headers["content-type"].startswith(FHIR_JSON)
            if Role(role) in ACCESS[name]:
                assert response.status_code == 200, (role, path, response.text)
            else:
                assert response.status_code == 403, (role, path, response.text)
                is_outcome(response.json(), "forbidden")


def test_observation_ids_name_the_vital_signs_the_contract_reads() -> None:
    encounter = rec.Encounter(
        encounter_id=str(uuid.uuid4()),
        patient_id=str(uuid.uuid4()),
        version=1,
        physician_id="dr",
        content=rec.EncounterContent(
            occurred_at=datetime.now(UTC) - timedelta(hours=1),
            chief_complaint="check",
            vital_signs=rec.VitalSigns(
                blood_pressure=rec.BloodPressure(systolic=120, diastolic=80),
                heart_rate=rec.HeartRate(value=70),
                temperature=rec.Temperature(value=37.0, unit="Cel"),
                respiratory_rate=rec.RespiratoryRate(value=14),
                oxygen_saturation=rec.OxygenSaturation(value=98),
                weight=rec.Weight(value=70, unit="kg"),
                height=rec.Height(value=170, unit="cm"),
            ),
        ),
        recorded_by="dr",
        recorded_at=datetime.now(UTC),
    )
    ids = [o["id"] for o in fhirmap.observations(encounter)]
    assert ids == [f"{encounter.encounter_id}-{s}" for s in fhir.VITAL_SUFFIXES]
    for observation_id in ids:
        assert fhir.ObservationRead(observation_id=observation_id).encounter_id == (
            encounter.encounter_id
        )


def test_the_command_line_reads_fhir(world: Mesh, clinic: Seeded, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from tests.processes import process_env

    runner = CliRunner()
    env = process_env(
        world.settings, MEDIHAVEN_HOME=str(tmp_path / "dr"), MEDIHAVEN_PASSPHRASE="a passphrase!"
    )
    token = clinic.admin.client.post("/api/v1/tokens", {"role": "physician"})["token"]
    registered = runner.invoke(
        app,
        [
            *("register", "--token", token, "--username", "dr-fhir-cli"),
            *("--display-name", "Dr Cli", "--url", world.url),
        ],
        env=env,
    )
    assert registered.exit_code == 0, registered.output
    listed = runner.invoke(app, ["fhir", "get", "Practitioner", "-p", "_count=100"], env=env)
    assert listed.exit_code == 0, listed.output
    bundle = json.loads(listed.output)
    assert "Dr Cli" in {r["name"][0]["text"] for r in resources(bundle)}
    validate(bundle)
    # a physician without a care relationship: the OperationOutcome's sentence, exit 1
    refused = runner.invoke(app, ["fhir", "get", f"Patient/{clinic.patient_id}"], env=env)
    assert refused.exit_code == 1 and "error 403" in refused.output
    bad = runner.invoke(app, ["fhir", "get", "Observation", "-p", "subject"], env=env)
    assert bad.exit_code != 0 and "name=value" in bad.output
