"""A clinic's day through the gateway, with real signatures and real processes: a
receptionist registers and finds a patient, a physician records an encounter, prescribes
and reads the summary; an administrator sees no patient data; bad input is a 4xx."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.gateway.support import Mesh, Staff, mesh, prescribe_from_catalog
from tests.processes import running


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("daylogs")
    with (
        mesh("gwday", logs) as m,
        running(["services.records", "services.scheduling"], m.settings, logs),
    ):
        yield m


WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def book(desk: Staff, doctor: Staff, patient_id: str) -> None:
    """The desk books the patient with the physician (which is what opens the chart)."""
    desk.client.put(
        f"/api/v1/physicians/{doctor.account_id}/working-hours",
        {"weekly": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in WEEKDAYS]},
    )
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    desk.client.post(
        "/api/v1/appointments",
        {
            "patient_id": patient_id,
            "physician_id": doctor.account_id,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "reason": "wheezing at night",
        },
    )


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
    # without a care relationship the physician sees no chart and records nothing
    assert doctor.client.request("GET", f"/api/v1/patients/{patient_id}/summary").status_code == 403
    # the desk books the patient with the physician: the chart opens to them
    book(desk, doctor, patient_id)
    # the physician records an encounter and prescribes
    encounter = doctor.client.post(
        f"/api/v1/patients/{patient_id}/encounters",
        {
            "content": {
                "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "chief_complaint": "Wheezing at night",
                "diagnoses": [{"code": "J45.9"}],
                "vital_signs": {"heart_rate": {"value": 88}},
                "allergies": [{"substance": "Penicillin", "severity": "moderate"}],
            }
        },
    )
    # the physician prescribes from the catalog (details copied at signing)
    rx = prescribe_from_catalog(admin, doctor, patient_id, encounter["encounter_id"])
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


def test_the_desk_and_the_physician_on_the_command_line(world: Mesh, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from tests.processes import process_env

    runner = CliRunner()
    admin = world.admin().client

    def person(role: str, name: str) -> dict[str, str]:
        env = process_env(
            world.settings,
            MEDIHAVEN_HOME=str(tmp_path / name),
            MEDIHAVEN_PASSPHRASE="a long passphrase",
        )
        token = admin.post("/api/v1/tokens", {"role": role})["token"]
        result = runner.invoke(
            app,
            [
                "register",
                "--token",
                token,
                "--username",
                name,
                "--display-name",
                name.title(),
                "--url",
                world.url,
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        return env

    def run(env: dict[str, str], *args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    desk, doctor = person("receptionist", "desk-cli"), person("physician", "dr-cli")
    out = run(
        desk,
        "patient",
        "register",
        "--given",
        "Ravi",
        "--family",
        "Menon",
        "--dob",
        "1975-11-02",
        "--sex",
        "male",
        "--phone",
        "+91 98765 43210",
    )
    patient_id = out.split()[-1]
    assert patient_id in run(desk, "patient", "search", "--family", "menon", "--dob", "1975-11-02")
    doctor_id = json.loads(run(doctor, "me"))["account_id"]
    run(desk, "schedule", "hours", doctor_id, "--period", "mon-sun=00:00-24:00")
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    run(
        desk,
        "schedule",
        "book",
        "--patient",
        patient_id,
        "--physician",
        doctor_id,
        "--start",
        start.isoformat(),
        "--reason",
        "chest pain",
    )
    out = run(
        doctor,
        "encounter",
        "add",
        patient_id,
        "--complaint",
        "Chest pain on exertion",
        "--diagnosis",
        "I20.9",
    )
    encounter_id = out.split()[2]
    out = run(
        doctor,
        "rx",
        "write",
        patient_id,
        encounter_id,
        "--drug",
        "Nitroglycerin",
        "--strength",
        "0.4 mg",
        "--form",
        "tablet",
        "--dose",
        "1 tablet",
        "--route",
        "sublingual",
        "--frequency",
        "as needed",
        "--days",
        "30",
        "--quantity",
        "25",
    )
    rx_id = out.split()[1]
    verified = run(doctor, "rx", "verify", rx_id)
    assert "valid" in verified
    # The fingerprint a printed prescription shows (shared vectors pin its form).
    assert re.search(r"signature fingerprint: ([0-9a-f]{4} ){15}[0-9a-f]{4}\n", verified)
    assert "Nitroglycerin" in run(doctor, "rx", "list", patient_id)
    # A nitrate with a PDE-5 inhibitor: stopped with the alert, prescribed with a reason.
    sildenafil = [
        *("rx", "write", patient_id, encounter_id, "--drug", "Sildenafil", "--strength"),
        *("50 mg", "--dose", "1 tablet", "--frequency", "as needed", "--days", "30"),
        *("--quantity", "4"),
    ]
    stopped = runner.invoke(app, sildenafil, env=doctor)
    assert stopped.exit_code == 1, stopped.output
    assert "ALERT (high): Interaction with Nitroglycerin" in stopped.output
    assert "hypotension" in stopped.output and "--override" in stopped.output
    out = run(doctor, *sildenafil, "--override", "Cardiology agreed; nitrate stopped today.")
    assert "is active" in out
    assert "Chest pain on exertion" in run(doctor, "patient", "summary", patient_id)
    denied = runner.invoke(app, ["patient", "summary", patient_id], env=desk)
    assert denied.exit_code == 1 and "403" in denied.output
    # The administrator verifies the audit chain: since the last mark, then all of it.
    auditor = person("administrator", "admin-cli")
    assert re.search(r"ok: entries \d+\.\.\d+ verified", run(auditor, "audit", "verify"))
    assert "ok: the whole chain" in run(auditor, "audit", "verify", "--full")


async def test_break_glass_through_the_gateway_notifies_administrators(world: Mesh) -> None:
    import asyncio
    import json

    from websockets.asyncio.client import connect

    from mesh.httpsig import sign_request

    desk = await asyncio.to_thread(world.staff, "receptionist")
    stranger = await asyncio.to_thread(world.staff, "physician")
    admin = await asyncio.to_thread(world.admin)
    patient_id = (
        await asyncio.to_thread(
            desk.client.post,
            "/api/v1/patients",
            {
                "demographics": {**PATIENT["demographics"], "family_name": "Glass"},
                "confirm_duplicate": True,
            },
        )
    )["patient_id"]
    url = world.url.replace("http://", "ws://") + "/api/v1/ws"
    headers = sign_request(admin.client.private_key, admin.account_id, "GET", url, b"")
    async with connect(url, additional_headers=headers) as admin_ws:
        while json.loads(await admin_ws.recv())["type"] != "ready":
            pass
        refused = await asyncio.to_thread(
            stranger.client.request, "GET", f"/api/v1/patients/{patient_id}/summary"
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["break_glass"] is True
        opened = await asyncio.to_thread(
            stranger.client.post,
            f"/api/v1/patients/{patient_id}/break-glass",
            {"reason": "Collapsed in the waiting room"},
        )
        notice = json.loads(await asyncio.wait_for(admin_ws.recv(), 10))
        assert notice["type"] == "records.break_glass.opened"
        assert notice["grant_id"] == opened["grant_id"]
        assert notice["physician_id"] == stranger.account_id
    chart = await asyncio.to_thread(stranger.client.get, f"/api/v1/patients/{patient_id}/summary")
    assert chart["patient"]["patient_id"] == patient_id
    report = await asyncio.to_thread(admin.client.get, "/api/v1/break-glass")
    assert any(g["grant_id"] == opened["grant_id"] for g in report["grants"])
