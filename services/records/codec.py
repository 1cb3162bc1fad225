"""Between wire models and what is encrypted: which plaintext goes in which column.

Related values are encrypted together as one JSON document per column (a patient's
identity, contact details; an encounter's note): one ciphertext instead of several,
fewer fields per keyvault batch, and the length of each single value stays hidden.
The keyvault binds each ciphertext to its table, column and row id.
"""

from __future__ import annotations

import json
from datetime import date

from pydantic import BaseModel, TypeAdapter

from contracts import records as rec
from mesh.keyvault import Terms
from services.records.store import EncounterRow, PatientRow, PatientTokens, PrescriptionRow

PATIENTS = "patients"
ENCOUNTERS = "encounter_versions"
PRESCRIPTIONS = "prescriptions"

_IDENTITY = {"given_name", "family_name", "date_of_birth", "sex"}
_CONTACT = {"phone", "email", "address", "emergency_contact"}
_NOTE_EXCLUDES = {"occurred_at", "allergies"}

# --------------------------------------------------------------------------- patients


def demographics_fields(d: rec.Demographics) -> dict[str, str | None]:
    """Column -> plaintext for the demographics (not the MRN, not the clinical flags)."""
    return {
        "identity": d.model_dump_json(include=_IDENTITY),
        "contact": d.model_dump_json(include=_CONTACT),
        "insurance": d.insurance.model_dump_json() if d.insurance else None,
    }


def identity_terms(family_name: str, given_name: str, born: date) -> Terms:
    """Same person? (possible-duplicate check): family + given name + date of birth."""
    return [
        ("family_name", family_name),
        ("given_name", given_name),
        ("date_of_birth", born.isoformat()),
    ]


def name_dob_terms(family_name: str, born: date) -> Terms:
    return [("family_name", family_name), ("date_of_birth", born.isoformat())]


def phone_terms(phone: str) -> Terms:
    return [("phone", phone)]


def mrn_terms(mrn: str) -> Terms:
    return [("mrn", mrn)]


def sound_terms(family_name: str, born: date) -> list[Terms]:
    """The family name's sound (both Double Metaphone codes, the keyvault makes them) with
    the birth date: one query per code."""
    return [
        [("family_sound", family_name), ("date_of_birth", born.isoformat())],
        [("family_sound_alt", family_name), ("date_of_birth", born.isoformat())],
    ]


def phone_search_terms(phone: str) -> list[Terms]:
    """A phone number as stored now (read with the clinic's region) and as stored before."""
    return [[("phone", phone)], [("phone_digits", phone)]]


def demographics_queries(d: rec.Demographics) -> list[Terms]:
    """Blind-index queries stored with a patient: identity, name + birth date, the two
    sounds of the family name, phone (see `demographics_tokens`)."""
    queries = [
        identity_terms(d.family_name, d.given_name, d.date_of_birth),
        name_dob_terms(d.family_name, d.date_of_birth),
        *sound_terms(d.family_name, d.date_of_birth),
    ]
    if d.phone is not None:
        queries.append(phone_terms(d.phone))
    return queries


def demographics_tokens(
    d: rec.Demographics, tokens: list[str], mrn: str | None = None
) -> PatientTokens:
    """The tokens of `demographics_queries(d)`, in its order, as stored."""
    return PatientTokens(
        identity=tokens[0],
        name_dob=tokens[1],
        sounds=frozenset(tokens[2:4]),
        phone=tokens[4] if d.phone is not None else None,
        mrn=mrn,
    )


def patient_brief_fields(row: PatientRow) -> dict[str, str | None]:
    return {"mrn": row.mrn_enc, "identity": row.identity_enc}


def patient_full_fields(row: PatientRow, clinical: bool) -> dict[str, str | None]:
    fields = {
        "mrn": row.mrn_enc,
        "identity": row.identity_enc,
        "contact": row.contact_enc,
        "insurance": row.insurance_enc,
    }
    if clinical:
        fields["clinical_flags"] = row.clinical_flags_enc
    return fields


def patient_brief(row: PatientRow, plain: dict[str, str]) -> rec.PatientBrief:
    identity = json.loads(plain["identity"])
    return rec.PatientBrief(patient_id=row.patient_id, mrn=plain["mrn"], **identity)


def patient(row: PatientRow, plain: dict[str, str], clinical: bool) -> rec.Patient:
    insurance = plain.get("insurance")
    demographics = rec.Demographics.model_validate(
        {
            **json.loads(plain["identity"]),
            **json.loads(plain["contact"]),
            "insurance": json.loads(insurance) if insurance else None,
        }
    )
    flags: list[rec.ClinicalFlag] | None = None
    if clinical:
        stored = plain.get("clinical_flags")
        flags = [rec.ClinicalFlag(f) for f in json.loads(stored)] if stored else []
    return rec.Patient(
        patient_id=row.patient_id,
        mrn=plain["mrn"],
        demographics=demographics,
        clinical_flags=flags,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def flags_text(flags: list[rec.ClinicalFlag]) -> str:
    return json.dumps(sorted(f.value for f in flags))


# --------------------------------------------------------------------------- encounters


def encounter_fields(
    content: rec.EncounterContent, amendment_reason: str | None = None
) -> dict[str, str | None]:
    return {
        "note": content.model_dump_json(exclude=_NOTE_EXCLUDES),
        "allergies": json.dumps([a.model_dump(mode="json") for a in content.allergies]),
        "amendment_reason": amendment_reason,
    }


def encounter_stored_fields(row: EncounterRow) -> dict[str, str | None]:
    return {
        "note": row.note_enc,
        "allergies": row.allergies_enc,
        "amendment_reason": row.amendment_reason_enc,
    }


def encounter(row: EncounterRow, plain: dict[str, str]) -> rec.Encounter:
    # One pass in pydantic-core over the stored JSON documents (no json.loads).
    note = plain["note"]
    document = (
        f'{{"occurred_at":"{row.occurred_at.isoformat()}",'
        f'"allergies":{plain["allergies"]}{"," if note.strip() != "{}" else ""}'
        f"{note.strip()[1:]}"
    )
    content = rec.EncounterContent.model_validate_json(document)
    return rec.Encounter(
        encounter_id=row.encounter_id,
        patient_id=row.patient_id,
        version=row.version,
        physician_id=row.physician_id,
        content=content,
        recorded_by=row.recorded_by,
        recorded_at=row.recorded_at,
        supersedes=row.supersedes,
        amendment_reason=plain.get("amendment_reason"),
    )


_ALLERGIES = TypeAdapter(list[rec.Allergy])
_ENTRIES = TypeAdapter(list[rec.AllergyEntry])


def allergies(text: str) -> list[rec.Allergy]:
    """The allergies recorded on an encounter version."""
    return _ALLERGIES.validate_json(text)


# --------------------------------------------------------------------------- allergy lists


def allergy_list_text(entries: list[rec.AllergyEntry]) -> str:
    return _ENTRIES.dump_json(entries).decode()


def allergy_entries(text: str) -> list[rec.AllergyEntry]:
    return _ENTRIES.validate_json(text)


# --------------------------------------------------------------------------- prescriptions


def prescription_stored_fields(row: PrescriptionRow) -> dict[str, str | None]:
    return {
        "medication": row.medication_enc,
        "cancellation_reason": row.cancellation_reason_enc,
        "safety": row.safety_enc,
    }


class Safety(BaseModel):
    """What a prescription signed despite alerts keeps of them (column `safety`)."""

    alerts: list[str]
    override_reason: str


def safety_text(alerts: list[str], override_reason: str) -> str | None:
    if not alerts:
        return None
    return Safety(alerts=alerts, override_reason=override_reason).model_dump_json()


def prescription(row: PrescriptionRow, plain: dict[str, str]) -> rec.Prescription:
    stored = plain.get("safety")
    safety = Safety.model_validate_json(stored) if stored else Safety(alerts=[], override_reason="")
    return rec.Prescription(
        prescription_id=row.prescription_id,
        patient_id=row.patient_id,
        prescriber_id=row.prescriber_id,
        encounter_id=row.encounter_id,
        created_at=row.created_at,
        medication=rec.Medication.model_validate_json(plain["medication"]),
        alerts=safety.alerts,
        override_reason=safety.override_reason,
        signature=row.signature,
        signer_public_key=row.signer_public_key,
        status=rec.PrescriptionStatus(row.status),
        status_changed_at=row.status_changed_at,
        status_changed_by=row.status_changed_by,
        cancellation_reason=plain.get("cancellation_reason"),
    )
