"""A clinic's day through the gateway, with real signatures and real processes: a
receptionist registers and finds a patient, a physician records an encounter, prescribes
and reads the summary; an administrator sees no patient data; bad input is a 4xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cli.sdk import sign_prescription
from tests.gateway.support import Mesh, mesh
from tests.processes import running


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("daylogs")
    with mesh("gwday", logs) as m, running(["services.records"], m.settings, logs):
        yield m


PATIENT = {
    "demographics": {
        "given_name": "Amara",
        "family_name": "Okonkwo",
        "date_of_birth": "1984-03-09",
        "sex": "female",
        "phone": "+44 20 7946 0958",
    }
}


def test_a_clinic_day(world: Mesh) -> None:
    desk, doctor, admin = world.staff("receptionist"), world.staff("physician"), world.admin()
    written = desk.client.post("/api/v1/patients", PATIENT)
    patient_id = written["patient_id"]
    # a possible duplicate is flagged with the existing record
    duplicate = desk.client.request("POST", "/api/v1/patients", PATIENT)
    assert duplicate.status_code == 409
    found = desk.client.get(
        "/api/v1/patients/search", family_name="OKONKWO", date_of_birth="1984-03-09"
    )
    assert [p["patient_id"] for p in found["patients"]] == [patient_id]
    assert desk.client.get("/api/v1/patients/search", phone="0044 20 7946 0958")["patients"]
    assert desk.client.get("/api/v1/patients/search", phone="+44 20 7946 0959")["patients"] == []
    assert (
        desk.client.get(f"/api/v1/patients/{patient_id}")["demographics"]["given_name"] == "Amara"
    )
    # the physician records an encounter and prescribes
    encounter = doctor.client.post(
        f"/api/v1/patients/{patient_id}/encounters",
        {
            "content": {
                "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "chief_complaint": "Wheezing at night",
                "diagnoses": [{"code": "J45.909"}],
                "vital_signs": {"heart_rate": {"value": 88}},
                "allergies": [{"substance": "Penicillin", "severity": "moderate"}],
            }
        },
    )
    body = sign_prescription(
        doctor.client.private_key,
        doctor.account_id,
        {
            "prescription_id": str(uuid.uuid4()),
            "patient_id": patient_id,
            "encounter_id": encounter["encounter_id"],
            "created_at": datetime.now(UTC).isoformat(),
            "medication": {
                "drug_name": "Salbutamol",
                "strength": "100 micrograms",
                "dosage_form": "inhaler",
                "dose": "2 puffs",
                "route": "inhalation",
                "frequency": "as needed",
                "duration_days": 30,
                "quantity": 1,
                "refills": 1,
            },
        },
    )
    rx = doctor.client.post("/api/v1/prescriptions", body)
    assert rx["status"] == "active"
    check = doctor.client.get(f"/api/v1/prescriptions/{rx['prescription_id']}/verify")
    assert check["valid"] and check["mac_valid"] and check["signature_valid"]
    summary = doctor.client.get(f"/api/v1/patients/{patient_id}/summary")
    assert summary["patient"]["patient_id"] == patient_id
    assert [p["medication"]["drug_name"] for p in summary["active_prescriptions"]] == ["Salbutamol"]
    assert [a["substance"] for a in summary["allergies"]] == ["Penicillin"]
    # minimum necessary: the desk sees no clinical data, the administrator no patient data
    assert desk.client.request("GET", f"/api/v1/patients/{patient_id}/summary").status_code == 403
    for path in (f"/api/v1/patients/{patient_id}", "/api/v1/patients"):
        assert admin.client.request("GET", path).status_code == 403
    # and the reads were audited
    history = admin.client.get(f"/api/v1/audit/patients/{patient_id}")
    assert history["total"] >= 1


def test_bad_input_is_a_4xx_with_reasons(world: Mesh) -> None:
    desk, doctor = world.staff("receptionist"), world.staff("physician")
    bad = [
        (
            desk,
            "POST",
            "/api/v1/patients",
            {"demographics": {**PATIENT["demographics"], "date_of_birth": "1984-13-40"}},
        ),
        (desk, "POST", "/api/v1/patients", {"demographics": {**PATIENT["demographics"], "sex": 7}}),
        (desk, "GET", "/api/v1/patients/not-a-uuid", None),
        (desk, "GET", "/api/v1/patients/search", None),
        (
            doctor,
            "POST",
            f"/api/v1/patients/{uuid.uuid4()}/encounters",
            {
                "content": {
                    "occurred_at": "2020-01-01T00:00:00Z",
                    "chief_complaint": "x",
                    "diagnoses": [{"code": "NOT-ICD"}],
                }
            },
        ),
        (
            doctor,
            "POST",
            f"/api/v1/patients/{uuid.uuid4()}/encounters",
            {
                "content": {
                    "occurred_at": "2020-01-01T00:00:00Z",
                    "chief_complaint": "x",
                    "vital_signs": {"heart_rate": {"value": 900}},
                }
            },
        ),
        (doctor, "POST", "/api/v1/prescriptions", {"patient_id": "x"}),
        (doctor, "GET", f"/api/v1/prescriptions/{uuid.uuid4()}", None),
    ]
    for member, method, path, body in bad:
        response = member.client.request(method, path, body)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert response.json()["error"]["message"]
