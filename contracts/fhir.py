"""FHIR R4 at the gateway (`/fhir/R4/...`): the chart readable by any FHIR client.

Every FHIR interaction is a routed method like any other (`contracts.base.HttpRoute`
with `prefix=FHIR_PREFIX`): a user's signed request, checked by the gateway and again by
the serving service's runtime, with the same roles, care relationships, audit and a
`Grant` no wider than the interaction needs. The serving service answers with its own
contract model (the very reply of the read it already has: a `Patient`, an
`EncounterList`…), made by the same handler; the gateway maps that reply to FHIR
resources in one module (`mesh.fhirmap`) and wraps it (`mesh.fhir`: Bundle, paging,
OperationOutcome). Search parameters are exactly those declared here: any other is
refused (400 OperationOutcome), never ignored.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from contracts import audit as aud
from contracts import auth as au
from contracts import records as rec
from contracts import scheduling as sch
from contracts.base import ALL_ROLES, HttpRoute, Model, Role, RpcMethod
from contracts.grants import BlindIndex, Decrypt, Grant, Match

FHIR_PREFIX = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
MRN_SYSTEM = "urn:medihaven:mrn"
"""Identifier system of Medihaven's medical record numbers."""
ACCOUNT_SYSTEM = "urn:medihaven:account"
"""Identifier system of staff accounts (Practitioner.identifier, AuditEvent.agent)."""
DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_OFFSET = 1000
ENCOUNTERS_SEARCHED = 100
"""Encounter, Condition and Observation searches page through the patient's latest
encounters (`records.list_encounters` at its largest page)."""
EVERYTHING_ENCOUNTERS = 50
"""`$everything`: the chart as the summary reads it (at most this many latest encounters)."""
ADMIN = frozenset({Role.administrator})


def _bare(resource_type: str) -> BeforeValidator:
    """`Patient/abc` or `abc` (a FHIR reference parameter) -> `abc`."""

    def strip(value: object) -> object:
        if isinstance(value, str) and value.startswith(resource_type + "/"):
            return value[len(resource_type) + 1 :]
        return value

    return BeforeValidator(strip)


def _exact_day(value: object) -> object:
    """A date search value: `YYYY-MM-DD` or `eqYYYY-MM-DD` (one day, nothing else)."""
    if isinstance(value, str) and value.startswith("eq"):
        return value[2:]
    return value


def _mrn(value: object) -> object:
    """An identifier token: `MRN`, `|MRN` or `urn:medihaven:mrn|MRN` (no other system)."""
    if isinstance(value, str) and "|" in value:
        system, _, code = value.partition("|")
        if system not in ("", MRN_SYSTEM):
            raise ValueError(f"only identifiers of the system {MRN_SYSTEM} are searched")
        return code
    return value


PatientParam = Annotated[str, _bare("Patient"), Field(pattern=rec.UUID_PATTERN)]
PractitionerParam = Annotated[str, _bare("Practitioner"), Field(pattern=sch.ID_PATTERN)]
SearchDay = Annotated[date, BeforeValidator(_exact_day)]
MrnToken = Annotated[rec.MrnQuery, BeforeValidator(_mrn)]


class FhirRequest(Model):
    """A FHIR request: parameters by their FHIR names (`_count`) or by field name."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True)


class Page(FhirRequest):
    """Offset paging: the gateway pages the service's reply (`mesh.fhir.searchset`)."""

    count: int = Field(default=DEFAULT_COUNT, ge=0, le=MAX_COUNT, alias="_count")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, alias="_offset")


PAGE = ("_count", "_offset")


class PatientRead(FhirRequest):
    patient_id: rec.Uuid


class PatientSearch(Page):
    """Exactly one criterion, each exact, through the blind indexes: the record number
    (`identifier`), family name and birth date together, or the phone number."""

    identifier: MrnToken | None = None
    family: rec.Name | None = None
    birthdate: Annotated[rec.BirthDate, BeforeValidator(_exact_day)] | None = None
    phone: rec.Phone | None = None

    @model_validator(mode="after")
    def _one_criterion(self) -> Self:
        by_name = self.family is not None or self.birthdate is not None
        if by_name and (self.family is None or self.birthdate is None):
            raise ValueError("search by name needs both family and birthdate")
        if by_name + (self.phone is not None) + (self.identifier is not None) != 1:
            raise ValueError("give exactly one of: identifier, family + birthdate, phone")
        return self


class ClinicalSearch(Page):
    """A patient's resources of one type."""

    patient: PatientParam


class EncounterRead(FhirRequest):
    encounter_id: rec.Uuid


class MedicationRequestRead(FhirRequest):
    prescription_id: rec.Uuid


class ProvenanceRead(FhirRequest):
    """A prescription's signature: the Provenance shares its MedicationRequest's id."""

    prescription_id: rec.Uuid


_UUID = rec.UUID_PATTERN.strip("^$")
VITAL_SUFFIXES = ("bp", "hr", "rr", "spo2", "temp", "wt", "ht")
"""Observation ids: `<encounter id>-<suffix>`, one per vital sign of the encounter."""


class ConditionRead(FhirRequest):
    """Condition ids are `<encounter id>-dx<n>`: the n-th diagnosis of that encounter."""

    condition_id: Annotated[str, Field(pattern=f"^{_UUID}-dx[1-9][0-9]?$")]

    @property
    def encounter_id(self) -> str:
        """The encounter it is read from (what the keyvault's grant binds the rows to)."""
        return self.condition_id.rsplit("-dx", 1)[0]


class ObservationRead(FhirRequest):
    observation_id: Annotated[str, Field(pattern=f"^{_UUID}-({'|'.join(VITAL_SUFFIXES)})$")]

    @property
    def encounter_id(self) -> str:
        return self.observation_id.rsplit("-", 1)[0]


class Everything(FhirRequest):
    patient_id: rec.Uuid


class AppointmentSearch(Page):
    """One physician's appointments of one day (the clinic's time zone)."""

    practitioner: PractitionerParam
    date: SearchDay


class AppointmentRead(FhirRequest):
    appointment_id: sch.Id


class PractitionerRead(FhirRequest):
    practitioner_id: sch.Id


class PractitionerSearch(Page):
    pass


class AuditEventSearch(FhirRequest):
    """The audit log, newest first; `patient`: the events naming that patient."""

    patient: Annotated[str, _bare("Patient"), Field(min_length=1, max_length=64)] | None = None
    count: int = Field(default=DEFAULT_COUNT, ge=1, le=MAX_COUNT, alias="_count")
    offset: int = Field(default=0, ge=0, le=aud.MAX_OFFSET, alias="_offset")


# ---------------------------------------------------------------------------- methods


def _read(path: str, query: tuple[str, ...] = ()) -> HttpRoute:
    return HttpRoute("GET", path, query=query, patient_data=True, prefix=FHIR_PREFIX)


PATIENT_COLUMNS = frozenset({"mrn", "identity", "contact"})
"""A FHIR Patient: demographics and contact details (no insurance, no clinical flags)."""

PATIENT_READ = RpcMethod(
    rec.SERVICE,
    "records.fhir_patient",
    PatientRead,
    rec.Patient,
    roles=rec.PATIENT_READERS,
    route=_read("/Patient/{patient_id}"),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({rec.PATIENTS_TABLE}),
            patient="patient_id",
            columns=PATIENT_COLUMNS,
        )
    ),
)
"""Minimum necessary: the keyvault decrypts no insurance and no clinical flags for it (the
reply's `insurance` and `clinical_flags` are None: not part of a FHIR Patient)."""
PATIENT_SEARCH = RpcMethod(
    rec.SERVICE,
    "records.fhir_patient_search",
    PatientSearch,
    rec.PatientList,
    roles=rec.PATIENT_READERS,
    route=_read("/Patient", ("identifier", "family", "birthdate", "phone", *PAGE)),
    grant=Grant(
        blind_index=BlindIndex(
            terms=(
                ("family_name", "family"),
                ("family_sound", "family"),
                ("family_sound_alt", "family"),
                ("date_of_birth", "birthdate"),
                ("phone", "phone"),
                ("phone_digits", "phone"),
                ("mrn", "identifier"),
            )
        ),
        decrypt=Decrypt(
            tables=frozenset({rec.PATIENTS_TABLE}),
            columns=rec.BRIEF_COLUMNS,
            match=Match(
                terms=(
                    ("family_name", "family"),
                    ("date_of_birth", "birthdate"),
                    ("phone", "phone"),
                    ("mrn", "identifier"),
                ),
                where=rec.PATIENT_FIELDS_AT,
            ),
            max_rows=rec.SEARCH_LIMIT,
        ),
    ),
)
"""Exact: the keyvault returns only rows whose decrypted family name (not merely its
sound), birth date, phone or record number is the signed one."""


def _clinical(
    name: str,
    resource: str,
    response: type[Any],
    tables: frozenset[str],
    columns: frozenset[str] | None = None,
) -> RpcMethod[ClinicalSearch, Any]:
    return RpcMethod(
        rec.SERVICE,
        name,
        ClinicalSearch,
        response,
        roles=rec.CLINICAL,
        route=_read(f"/{resource}", ("patient", *PAGE)),
        grant=Grant(decrypt=Decrypt(tables=tables, patient="patient", columns=columns)),
    )


_ENCOUNTERS = frozenset({rec.ENCOUNTERS_TABLE})
_ALLERGY_SOURCES = frozenset({rec.ALLERGIES_TABLE, rec.ENCOUNTERS_TABLE})
ENCOUNTER_SEARCH = _clinical(
    "records.fhir_encounter_search", "Encounter", rec.EncounterList, _ENCOUNTERS
)
CONDITION_SEARCH = _clinical(
    "records.fhir_condition_search", "Condition", rec.EncounterList, _ENCOUNTERS
)
OBSERVATION_SEARCH = _clinical(
    "records.fhir_observation_search", "Observation", rec.EncounterList, _ENCOUNTERS
)
ALLERGY_SEARCH = _clinical(
    "records.fhir_allergy_search",
    "AllergyIntolerance",
    rec.AllergyList,
    _ALLERGY_SOURCES,
    frozenset({rec.ALLERGY_COLUMN}),
)
MEDICATION_REQUEST_SEARCH = _clinical(
    "records.fhir_medication_request_search",
    "MedicationRequest",
    rec.PrescriptionList,
    frozenset({rec.PRESCRIPTIONS_TABLE}),
)
"""Each MedicationRequest comes with its `Provenance`: the prescriber's Ed25519 signature."""
ENCOUNTER_READ = RpcMethod(
    rec.SERVICE,
    "records.fhir_encounter",
    EncounterRead,
    rec.EncounterHistory,
    roles=rec.CLINICAL,
    route=_read("/Encounter/{encounter_id}"),
    grant=Grant(decrypt=Decrypt(tables=_ENCOUNTERS, row_id="encounter_id", one_patient=True)),
)
MEDICATION_REQUEST_READ = RpcMethod(
    rec.SERVICE,
    "records.fhir_medication_request",
    MedicationRequestRead,
    rec.Prescription,
    roles=rec.CLINICAL,
    route=_read("/MedicationRequest/{prescription_id}"),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({rec.PRESCRIPTIONS_TABLE}),
            row_id="prescription_id",
            one_patient=True,
        )
    ),
)
PROVENANCE_READ = RpcMethod(
    rec.SERVICE,
    "records.fhir_provenance",
    ProvenanceRead,
    rec.Prescription,
    roles=rec.CLINICAL,
    route=_read("/Provenance/{prescription_id}"),
    grant=MEDICATION_REQUEST_READ.grant,
)
CONDITION_READ = RpcMethod(
    rec.SERVICE,
    "records.fhir_condition",
    ConditionRead,
    rec.EncounterHistory,
    roles=rec.CLINICAL,
    route=_read("/Condition/{condition_id}"),
    grant=Grant(decrypt=Decrypt(tables=_ENCOUNTERS, row_id="encounter_id", one_patient=True)),
)
"""The encounter's current version is decrypted (the keyvault binds it to the encounter
id inside the signed Condition id), and the one diagnosis returned."""
OBSERVATION_READ = RpcMethod(
    rec.SERVICE,
    "records.fhir_observation",
    ObservationRead,
    rec.EncounterHistory,
    roles=rec.CLINICAL,
    route=_read("/Observation/{observation_id}"),
    grant=CONDITION_READ.grant,
)
EVERYTHING = RpcMethod(
    rec.SERVICE,
    "records.fhir_everything",
    Everything,
    rec.PatientSummary,
    roles=rec.CLINICAL,
    route=_read("/Patient/{patient_id}/$everything"),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset(
                {
                    rec.PATIENTS_TABLE,
                    rec.ENCOUNTERS_TABLE,
                    rec.ALLERGIES_TABLE,
                    rec.PRESCRIPTIONS_TABLE,
                }
            ),
            patient="patient_id",
        )
    ),
)
"""That patient's rows only (every row's ciphertext is bound to its patient), for a
physician in their care (records' access rule, as for the summary)."""

APPOINTMENT_SEARCH = RpcMethod(
    sch.SERVICE,
    "scheduling.fhir_appointment_search",
    AppointmentSearch,
    sch.Calendar,
    roles=sch.DESK_AND_PHYSICIANS,
    route=_read("/Appointment", ("practitioner", "date", *PAGE)),
    grant=Grant(
        decrypt=Decrypt(tables=frozenset({sch.APPOINTMENTS_TABLE}), physician="practitioner")
    ),
)
APPOINTMENT_READ = RpcMethod(
    sch.SERVICE,
    "scheduling.fhir_appointment",
    AppointmentRead,
    sch.Appointment,
    roles=sch.DESK_AND_PHYSICIANS,
    route=_read("/Appointment/{appointment_id}"),
    grant=Grant(
        decrypt=Decrypt(tables=frozenset({sch.APPOINTMENTS_TABLE}), row_id="appointment_id")
    ),
)
PRACTITIONER_READ = RpcMethod(
    au.SERVICE,
    "auth.fhir_practitioner",
    PractitionerRead,
    au.Directory,
    roles=ALL_ROLES,
    route=HttpRoute("GET", "/Practitioner/{practitioner_id}", prefix=FHIR_PREFIX),
)
"""The staff directory's entry of that active physician (no keys, no status history)."""
PRACTITIONER_SEARCH = RpcMethod(
    au.SERVICE,
    "auth.fhir_practitioner_search",
    PractitionerSearch,
    au.Directory,
    roles=ALL_ROLES,
    route=HttpRoute("GET", "/Practitioner", query=PAGE, prefix=FHIR_PREFIX),
)
"""The active physicians, as in the staff directory."""
AUDIT_EVENT_SEARCH = RpcMethod(
    aud.SERVICE,
    "audit.fhir_audit_event_search",
    AuditEventSearch,
    aud.AuditPage,
    roles=ADMIN,
    route=HttpRoute("GET", "/AuditEvent", query=("patient", *PAGE), prefix=FHIR_PREFIX),
)

ROUTED: tuple[RpcMethod[Any, Any], ...] = (
    PATIENT_READ,
    PATIENT_SEARCH,
    EVERYTHING,
    ENCOUNTER_READ,
    ENCOUNTER_SEARCH,
    CONDITION_READ,
    CONDITION_SEARCH,
    OBSERVATION_READ,
    OBSERVATION_SEARCH,
    ALLERGY_SEARCH,
    MEDICATION_REQUEST_READ,
    MEDICATION_REQUEST_SEARCH,
    PROVENANCE_READ,
    APPOINTMENT_READ,
    APPOINTMENT_SEARCH,
    PRACTITIONER_READ,
    PRACTITIONER_SEARCH,
    AUDIT_EVENT_SEARCH,
)
"""Every FHIR interaction at the gateway (and in the CapabilityStatement)."""

SEARCHED_TYPE: dict[str, str] = {
    ENCOUNTER_SEARCH.name: "Encounter",
    CONDITION_SEARCH.name: "Condition",
    OBSERVATION_SEARCH.name: "Observation",
    ALLERGY_SEARCH.name: "AllergyIntolerance",
    MEDICATION_REQUEST_SEARCH.name: "MedicationRequest",
}
