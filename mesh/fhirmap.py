"""The one mapping of Medihaven's models to FHIR R4 resources (records, scheduling, auth,
audit -> Patient, Encounter, Condition, Observation, AllergyIntolerance,
MedicationRequest, Provenance, Appointment, Practitioner, AuditEvent).

Pure functions of the contract models the services already return, so the gateway's
FHIR routes (`gateway.fhir`) and the audit service's NDJSON export use the same code,
and a change of model or of mapping is made once. Codes: LOINC for vital signs (with
UCUM units, category `vital-signs`), ICD-10 for diagnoses, HL7 terminology for statuses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts import audit as aud
from contracts import auth as au
from contracts import records as rec
from contracts import scheduling as sch
from contracts.fhir import ACCOUNT_SYSTEM, MRN_SYSTEM

Resource = dict[str, Any]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
SUBSTANCE_SYSTEM = "urn:medihaven:substance"
AUDIT_TYPE_SYSTEM = "urn:medihaven:audit-type"
SIGNER_KEY_EXTENSION = "urn:medihaven:ed25519-public-key"


def instant(value: datetime) -> str:
    """A FHIR instant / dateTime in UTC, to the microsecond (as Medihaven stores times)."""
    stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ref(resource_type: str, resource_id: str, display: str | None = None) -> Resource:
    reference: Resource = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        reference["display"] = display
    return reference


def _concept(system: str, code: str, display: str | None = None) -> Resource:
    coding: Resource = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


# ---------------------------------------------------------------------------- Patient


def patient(p: rec.Patient) -> Resource:
    d = p.demographics
    resource: Resource = {
        "resourceType": "Patient",
        "id": p.patient_id,
        "meta": {"versionId": str(p.version), "lastUpdated": instant(p.updated_at)},
        "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": p.mrn}],
        "active": True,
        "name": [{"use": "official", "family": d.family_name, "given": [d.given_name]}],
        "gender": d.sex.value,
        "birthDate": d.date_of_birth.isoformat(),
    }
    telecom = []
    if d.phone:
        telecom.append({"system": "phone", "value": d.phone})
    if d.email:
        telecom.append({"system": "email", "value": d.email})
    if telecom:
        resource["telecom"] = telecom
    if d.address:
        a = d.address
        lines = [a.line1, *([a.line2] if a.line2 else [])]
        address: Resource = {
            "line": lines,
            "city": a.city,
            "postalCode": a.postal_code,
            "country": a.country,
        }
        if a.region:
            address["state"] = a.region
        resource["address"] = [address]
    if d.emergency_contact:
        c = d.emergency_contact
        resource["contact"] = [
            {
                "relationship": [{"text": c.relationship}],
                "name": {"text": c.name},
                "telecom": [{"system": "phone", "value": c.phone}],
            }
        ]
    return resource


def patient_brief(b: rec.PatientBrief) -> Resource:
    """A search hit: what a search decrypts (name, birth date, sex, record number)."""
    return {
        "resourceType": "Patient",
        "id": b.patient_id,
        "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": b.mrn}],
        "active": True,
        "name": [{"use": "official", "family": b.family_name, "given": [b.given_name]}],
        "gender": b.sex.value,
        "birthDate": b.date_of_birth.isoformat(),
    }


# ---------------------------------------------------------------------------- encounters


def encounter(e: rec.Encounter) -> Resource:
    c = e.content
    resource: Resource = {
        "resourceType": "Encounter",
        "id": e.encounter_id,
        "meta": {"versionId": str(e.version), "lastUpdated": instant(e.recorded_at)},
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "subject": ref("Patient", e.patient_id),
        "participant": [{"individual": ref("Practitioner", e.physician_id)}],
        "period": {"start": instant(c.occurred_at)},
        "reasonCode": [{"text": c.chief_complaint}],
    }
    if c.diagnoses:
        resource["diagnosis"] = [
            {"condition": ref("Condition", condition_id(e, i)), "rank": i + 1}
            for i in range(len(c.diagnoses))
        ]
    return resource


def condition_id(e: rec.Encounter, index: int) -> str:
    return f"{e.encounter_id}-dx{index + 1}"


def conditions(e: rec.Encounter) -> list[Resource]:
    """One Condition per ICD-10 diagnosis of the encounter (`encounter-diagnosis`)."""
    found = []
    for i, dx in enumerate(e.content.diagnoses):
        code = dx.code
        found.append(
            {
                "resourceType": "Condition",
                "id": condition_id(e, i),
                "verificationStatus": _concept(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
                ),
                "category": [_concept(CONDITION_CATEGORY, "encounter-diagnosis")],
                "code": {
                    "coding": [
                        {
                            "system": ICD10,
                            "code": code,
                            **({"display": dx.description} if dx.description else {}),
                        }
                    ],
                    "text": dx.description or code,
                },
                "subject": ref("Patient", e.patient_id),
                "encounter": ref("Encounter", e.encounter_id),
                "recordedDate": instant(e.recorded_at),
                "recorder": ref("Practitioner", e.recorded_by),
            }
        )
    return found


def _quantity(value: float, unit: str, text: str | None = None) -> Resource:
    return {"value": value, "unit": text or unit, "system": UCUM, "code": unit}


_VITALS: tuple[tuple[str, str, str, str], ...] = (
    # (field, id suffix, LOINC code, display)
    ("heart_rate", "hr", "8867-4", "Heart rate"),
    ("respiratory_rate", "rr", "9279-1", "Respiratory rate"),
    ("oxygen_saturation", "spo2", "2708-6", "Oxygen saturation in Arterial blood"),
    ("temperature", "temp", "8310-5", "Body temperature"),
    ("weight", "wt", "29463-7", "Body weight"),
    ("height", "ht", "8302-2", "Body height"),
)
_UCUM_UNITS = {"mmHg": "mm[Hg]"}
"""Medihaven's unit -> UCUM code, where they differ (the rest are UCUM already)."""


def observations(e: rec.Encounter) -> list[Resource]:
    """The encounter's vital signs, each a `vital-signs` Observation with its LOINC code
    and UCUM unit (blood pressure: one panel with systolic and diastolic components)."""
    vitals = e.content.vital_signs
    if vitals is None:
        return []

    def observation(suffix: str, code: str, display: str, **value: Any) -> Resource:
        return {
            "resourceType": "Observation",
            "id": f"{e.encounter_id}-{suffix}",
            "status": "final",
            "category": [_concept(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
            "code": {**_concept(LOINC, code, display), "text": display},
            "subject": ref("Patient", e.patient_id),
            "encounter": ref("Encounter", e.encounter_id),
            "effectiveDateTime": instant(e.content.occurred_at),
            "issued": instant(e.recorded_at),
            "performer": [ref("Practitioner", e.physician_id)],
            **value,
        }

    found = []
    bp = vitals.blood_pressure
    if bp is not None:
        unit = _UCUM_UNITS[bp.unit]
        found.append(
            observation(
                "bp",
                "85354-9",
                "Blood pressure panel with all children optional",
                component=[
                    {
                        "code": _concept(LOINC, "8480-6", "Systolic blood pressure"),
                        "valueQuantity": _quantity(bp.systolic, unit, bp.unit),
                    },
                    {
                        "code": _concept(LOINC, "8462-4", "Diastolic blood pressure"),
                        "valueQuantity": _quantity(bp.diastolic, unit, bp.unit),
                    },
                ],
            )
        )
    for field, suffix, code, display in _VITALS:
        measured = getattr(vitals, field)
        if measured is not None:
            quantity = _quantity(measured.value, _UCUM_UNITS.get(measured.unit, measured.unit))
            found.append(observation(suffix, code, display, valueQuantity=quantity))
    return found


# ---------------------------------------------------------------------------- allergies

_ALLERGY_CLINICAL = {
    rec.AllergyStatus.active: "active",
    rec.AllergyStatus.resolved: "resolved",
    rec.AllergyStatus.refuted: "inactive",
}


def allergy(patient_id: str, a: rec.AllergyEntry) -> Resource:
    verification = "refuted" if a.status is rec.AllergyStatus.refuted else "confirmed"
    code: Resource = {"text": a.substance}
    if a.code:
        code["coding"] = [{"system": SUBSTANCE_SYSTEM, "code": a.code, "display": a.substance}]
    resource: Resource = {
        "resourceType": "AllergyIntolerance",
        "id": a.allergy_id,
        "meta": {"lastUpdated": instant(a.updated_at)},
        "clinicalStatus": _concept(ALLERGY_CLINICAL, _ALLERGY_CLINICAL[a.status]),
        "verificationStatus": _concept(ALLERGY_VERIFICATION, verification),
        "code": code,
        "patient": ref("Patient", patient_id),
        "recordedDate": instant(a.recorded_at),
        "recorder": ref("Practitioner", a.recorded_by),
        "lastOccurrence": instant(a.observed_at),
    }
    if a.status is rec.AllergyStatus.refuted:
        del resource["clinicalStatus"]  # FHIR: no clinical status for a refuted allergy
    if a.severity is rec.AllergySeverity.severe:
        resource["criticality"] = "high"
    if a.reaction or a.severity is not rec.AllergySeverity.unknown:
        reaction: Resource = {"manifestation": [{"text": a.reaction or "not recorded"}]}
        if a.severity is not rec.AllergySeverity.unknown:
            reaction["severity"] = a.severity.value
        resource["reaction"] = [reaction]
    return resource


# ---------------------------------------------------------------------------- prescriptions

_MEDICATION_STATUS = {
    rec.PrescriptionStatus.active: "active",
    rec.PrescriptionStatus.cancelled: "cancelled",
    rec.PrescriptionStatus.completed: "completed",
}


def medication_request(p: rec.Prescription) -> Resource:
    m = p.medication
    form = m.dosage_form.value.replace("_", " ")
    resource: Resource = {
        "resourceType": "MedicationRequest",
        "id": p.prescription_id,
        "status": _MEDICATION_STATUS[p.status],
        "intent": "order",
        "medicationCodeableConcept": {"text": f"{m.drug_name} {m.strength} {form}"},
        "subject": ref("Patient", p.patient_id),
        "encounter": ref("Encounter", p.encounter_id),
        "authoredOn": instant(p.created_at),
        "requester": ref("Practitioner", p.prescriber_id),
        "dosageInstruction": [
            {
                "text": f"{m.dose} {m.route.value} {m.frequency} for {m.duration_days} days",
                "route": {"text": m.route.value},
                **({"patientInstruction": m.instructions} if m.instructions else {}),
            }
        ],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": m.refills,
            "quantity": {"value": m.quantity, "unit": form},
            "expectedSupplyDuration": {
                "value": m.duration_days,
                "unit": "days",
                "system": UCUM,
                "code": "d",
            },
        },
    }
    if p.status is rec.PrescriptionStatus.cancelled and p.cancellation_reason:
        resource["statusReason"] = {"text": p.cancellation_reason}
    if p.override_reason:
        resource["note"] = [{"text": f"Prescribed despite alerts: {p.override_reason}"}]
    return resource


def provenance(p: rec.Prescription) -> Resource:
    """The prescriber's Ed25519 signature over `canonical_prescription` (the author's
    signature), as a Provenance of the MedicationRequest; the signing key travels in an
    extension so a client can check it (`medihaven rx verify` does the same)."""
    signer = ref("Practitioner", p.prescriber_id)
    return {
        "resourceType": "Provenance",
        "id": p.prescription_id,  # its MedicationRequest's id (Provenance/{id} reads it)
        "target": [ref("MedicationRequest", p.prescription_id)],
        "recorded": instant(p.created_at),
        "agent": [
            {
                "type": _concept(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author"
                ),
                "who": signer,
            }
        ],
        "signature": [
            {
                "type": [{"system": SIGNATURE_TYPE, "code": "1.2.840.10065.1.12.1.1"}],
                "when": instant(p.created_at),
                "who": signer,
                "targetFormat": "application/json",
                "sigFormat": "application/octet-stream",
                "data": p.signature,
                "extension": [{"url": SIGNER_KEY_EXTENSION, "valueString": p.signer_public_key}],
            }
        ],
    }


# ---------------------------------------------------------------------------- scheduling

_APPOINTMENT_STATUS = {
    sch.AppointmentStatus.booked: "booked",
    sch.AppointmentStatus.arrived: "arrived",
    sch.AppointmentStatus.in_progress: "checked-in",
    sch.AppointmentStatus.completed: "fulfilled",
    sch.AppointmentStatus.no_show: "noshow",
    sch.AppointmentStatus.cancelled: "cancelled",
}


def appointment(a: sch.Appointment) -> Resource:
    resource: Resource = {
        "resourceType": "Appointment",
        "id": a.appointment_id,
        "meta": {"lastUpdated": instant(a.updated_at)},
        "status": _APPOINTMENT_STATUS[a.status],
        "start": instant(a.start),
        "end": instant(a.end),
        "minutesDuration": max(1, int((a.end - a.start).total_seconds() // 60)),
        "created": instant(a.created_at),
        "participant": [
            {"actor": ref("Patient", a.patient_id), "required": "required", "status": "accepted"},
            {
                "actor": ref("Practitioner", a.physician_id),
                "required": "required",
                "status": "accepted",
            },
        ],
    }
    if a.reason:
        resource["reasonCode"] = [{"text": a.reason}]
    if a.cancellation_reason:
        resource["cancelationReason"] = {"text": a.cancellation_reason}
    return resource


def practitioner(s: au.DirectoryEntry) -> Resource:
    resource: Resource = {
        "resourceType": "Practitioner",
        "id": s.account_id,
        "identifier": [{"system": ACCOUNT_SYSTEM, "value": s.account_id}],
        "active": True,
        "name": [{"text": s.display_name}],
    }
    if s.specialty:
        resource["qualification"] = [{"code": {"text": s.specialty}}]
    return resource


# ---------------------------------------------------------------------------- audit

_OUTCOME_CODES = {"success": "0", "refused": "4", "failure": "8"}


def audit_event(entry: aud.StoredAuditEvent) -> Resource:
    """A FHIR AuditEvent for one entry of the chain (its seq in an extension)."""
    e = entry.event
    agent: Resource = {"requestor": True}
    if e.agent.account_id:
        agent["who"] = {"identifier": {"system": ACCOUNT_SYSTEM, "value": e.agent.account_id}}
    else:
        agent["who"] = {"display": "anonymous"}
    if e.agent.role:
        agent["role"] = [{"text": e.agent.role.value}]
    if e.agent.address:
        agent["network"] = {"address": e.agent.address, "type": "2"}
    if e.purpose_of_use:
        agent["purposeOfUse"] = [{"coding": [{"code": e.purpose_of_use}]}]
    resource: Resource = {
        "resourceType": "AuditEvent",
        "id": e.event_id,
        "type": {"system": AUDIT_TYPE_SYSTEM, "code": e.type},
        "action": e.action.value,
        "recorded": instant(e.recorded),
        "outcome": _OUTCOME_CODES[e.outcome.value],
        "agent": [agent],
        "source": {"observer": {"display": e.source}},
        "extension": [{"url": "urn:medihaven:audit-seq", "valueInteger": entry.seq}],
    }
    entities: list[Resource] = []
    for patient_id in [e.patient_id] if e.patient_id else e.patients:
        entities.append({"what": {"reference": f"Patient/{patient_id}"}})
    if e.entity_type and e.entity_id:
        entities.append({"what": {"identifier": {"system": e.entity_type, "value": e.entity_id}}})
    if entities:
        resource["entity"] = entities
    if e.detail:
        resource["outcomeDesc"] = e.detail
    return resource
