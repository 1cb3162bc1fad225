"""`medihaven patient …`, `encounter …` and `rx …`: the desk's and the physician's work on
patients, clinical history and e-prescriptions, each a signed request through the gateway.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cli import profile
from cli.output import api_errors, show
from cli.sdk import new_prescription, path, signature_fingerprint

patient_app = typer.Typer(help="Patients (receptionists; physicians read).", no_args_is_help=True)
encounter_app = typer.Typer(help="Clinical history (physicians).", no_args_is_help=True)
rx_app = typer.Typer(help="E-prescriptions (physicians).", no_args_is_help=True)


@patient_app.command("register")
@api_errors
def register_patient(
    given: str = typer.Option(..., help="Given name."),
    family: str = typer.Option(..., help="Family name."),
    dob: str = typer.Option(..., help="Date of birth, YYYY-MM-DD."),
    sex: str = typer.Option(..., help="female, male, other or unknown."),
    phone: str = typer.Option(None),
    email: str = typer.Option(None),
    confirm_duplicate: bool = typer.Option(
        False, help="Create even though a patient with this name and birth date exists."
    ),
) -> None:
    demographics = {"given_name": given, "family_name": family, "date_of_birth": dob, "sex": sex}
    if phone:
        demographics["phone"] = phone
    if email:
        demographics["email"] = email
    written = profile.client().post(
        "/api/v1/patients", {"demographics": demographics, "confirm_duplicate": confirm_duplicate}
    )
    typer.echo(f"registered patient {written['patient_id']}")


@patient_app.command("search")
@api_errors
def search(
    family: str = typer.Option(None, help="Family name (with --dob)."),
    dob: str = typer.Option(None, help="Date of birth (with --family)."),
    phone: str = typer.Option(None),
    mrn: str = typer.Option(None, help="Medical record number."),
) -> None:
    """Exact match: family name + date of birth, or phone, or record number."""
    found = profile.client().get(
        "/api/v1/patients/search", family_name=family, date_of_birth=dob, phone=phone, mrn=mrn
    )
    for p in found["patients"]:
        typer.echo(json.dumps(p, sort_keys=True))
    if not found["patients"]:
        typer.echo("no patient matches")


@patient_app.command("show")
@api_errors
def show_patient(patient_id: str) -> None:
    show(profile.client().get(path("/api/v1/patients/{patient_id}", patient_id=patient_id)))


@patient_app.command("summary")
@api_errors
def summary(patient_id: str) -> None:
    """Physicians: demographics, recent encounters, active prescriptions, allergies."""
    show(profile.client().get(path("/api/v1/patients/{patient_id}/summary", patient_id=patient_id)))


@encounter_app.command("add")
@api_errors
def add_encounter(
    patient_id: str,
    complaint: str = typer.Option(None, help="Chief complaint."),
    diagnosis: list[str] = typer.Option([], help="ICD-10 code (repeatable)."),
    content_file: Path = typer.Option(
        None, "--json", help="The whole encounter content as a JSON file (see the OpenAPI)."
    ),
) -> None:
    if content_file is not None:
        content: dict[str, Any] = json.loads(content_file.read_text())
    elif complaint:
        content = {
            "occurred_at": datetime.now(UTC).isoformat(),
            "chief_complaint": complaint,
            "diagnoses": [{"code": code} for code in diagnosis],
        }
    else:
        raise typer.BadParameter("give --complaint or --json FILE")
    written = profile.client().post(
        path("/api/v1/patients/{patient_id}/encounters", patient_id=patient_id),
        {"content": content},
    )
    typer.echo(f"recorded encounter {written['encounter_id']} (version {written['version']})")


@rx_app.command("write")
@api_errors
def write(
    patient_id: str,
    encounter_id: str,
    drug: str = typer.Option("", help="Free text only (else copied from --medicine)."),
    strength: str = typer.Option("", help='e.g. "500 mg" (free text only)'),
    form: str = typer.Option("tablet", help="Dosage form (free text only)."),
    dose: str = typer.Option(..., help='e.g. "1 tablet"'),
    route: str = typer.Option("oral"),
    frequency: str = typer.Option(..., help='e.g. "twice daily"'),
    days: int = typer.Option(..., help="Duration in days."),
    quantity: int = typer.Option(...),
    refills: int = typer.Option(0),
    instructions: str = typer.Option("", help="Instructions to the patient."),
    medicine: str = typer.Option(
        None, help="Catalog entry id: its name, strength, form and route are copied."
    ),
    override: str = typer.Option(
        "", help="Prescribe despite the safety alerts shown, for this written reason."
    ),
) -> None:
    """Check the prescription (allergies, duplicate therapy, interactions), sign it with
    your key, here, and send it. Safety alerts stop it unless --override gives a reason
    (signed with the alerts). Without --medicine it is a free-text prescription, outside
    the catalog, and marked as such."""
    api = profile.client()
    if medicine:
        entry = api.get(path("/api/v1/catalog/medicines/{medicine}", medicine=medicine))["details"]
        drug, strength, form, route = (
            entry["name"],
            entry["strength"],
            entry["dosage_form"],
            entry["route"],
        )
        instructions = instructions or entry["default_instructions"]
    medication = {
        "drug_name": drug,
        "strength": strength,
        "dosage_form": form,
        "dose": dose,
        "route": route,
        "frequency": frequency,
        "duration_days": days,
        "quantity": quantity,
        "refills": refills,
        "instructions": instructions,
        "medicine_id": medicine or "",
        "free_text": not medicine,
    }
    check = api.post(
        "/api/v1/prescriptions/check", {"patient_id": patient_id, "medication": medication}
    )
    for alert in check["alerts"]:
        typer.secho(f"ALERT ({alert['severity']}): {alert['message']}", fg="red", err=True)
    if check["codes"] and not override.strip():
        typer.secho(
            "not prescribed: review the alerts, then run again with --override 'reason'",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    body = new_prescription(
        api.private_key,
        api.key_id,
        patient_id,
        encounter_id,
        medication,
        check["codes"],
        override.strip(),
    )
    written = api.post("/api/v1/prescriptions", body)
    typer.echo(f"prescription {written['prescription_id']} is {written['status']}")


@rx_app.command("verify")
@api_errors
def verify(prescription_id: str) -> None:
    """Re-check the stored prescription's MAC and its prescriber's signature."""
    result = profile.client().get(
        path("/api/v1/prescriptions/{prescription_id}/verify", prescription_id=prescription_id)
    )
    stored = result.get("prescription")
    if stored:
        typer.echo(f"signature fingerprint: {signature_fingerprint(stored['signature'])}")
    if result["valid"]:
        typer.echo("valid: row MAC and prescriber signature verify")
        return
    typer.secho(f"NOT VALID: {'; '.join(result['problems'])}", fg="red")
    raise typer.Exit(1)


@rx_app.command("cancel")
@api_errors
def cancel(prescription_id: str, reason: str = typer.Option(...)) -> None:
    written = profile.client().post(
        path("/api/v1/prescriptions/{prescription_id}/cancel", prescription_id=prescription_id),
        {"reason": reason},
    )
    typer.echo(f"prescription {written['prescription_id']} is {written['status']}")


@rx_app.command("list")
@api_errors
def list_prescriptions(patient_id: str, status: str = typer.Option(None)) -> None:
    found = profile.client().get(
        path("/api/v1/patients/{patient_id}/prescriptions", patient_id=patient_id), status=status
    )
    for p in found["prescriptions"]:
        m = p["medication"]
        typer.echo(
            f"{p['prescription_id']} {p['status']:<9} {m['drug_name']} {m['strength']}, "
            f"{m['dose']} {m['frequency']} for {m['duration_days']} days"
        )
