"""A clinic with a records service: unsealed keyvault, stand-in auth, staff, collected audits.

Each test module gets its own namespace (vhost, databases, keyvault). The records service
runs in-process (a `Runtime` on the clinic's settings), as the keyvault does; staff call
it as the gateway would (principal + fresh signed proof). Prescriptions are signed the
way a physician's client signs them.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from contracts import keyvault as kv
from contracts import records as rec
from contracts import scheduling as sched
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.base import Role, RpcMethod
from mesh.context import CallContext
from mesh.events import ReceivedEvent
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from services.keyvault.state import vault_of
from services.keyvault.vault import Vault
from services.records.care import start_access_server, stop_access_server
from services.records.handlers import router
from tests.support.clinic import Clinic, StaffMember, clinic

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "records" / "migrations"
ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)


def key() -> str:
    return str(uuid.uuid4())


def demographics(**overrides: Any) -> rec.Demographics:
    values: dict[str, Any] = {
        "given_name": "Amara",
        "family_name": "Okonkwo-Lindqvist",
        "date_of_birth": date(1984, 3, 9),
        "sex": rec.Sex.female,
        "phone": "+44 20 7946 0958",
        "email": "amara.okonkwo@example.org",
        "address": rec.Address(
            line1="14 Juniper Row", postal_code="EC1A 1BB", city="London", country="GB"
        ),
        "emergency_contact": rec.EmergencyContact(
            name="Tobias Lindqvist", relationship="spouse", phone="+44 20 7946 0111"
        ),
        "insurance": rec.Insurance(
            company="Harborview Mutual", member_id="HM-4471-2209", valid_until=date(2030, 12, 31)
        ),
    }
    values.update(overrides)
    return rec.Demographics(**values)


def content(**overrides: Any) -> rec.EncounterContent:
    values: dict[str, Any] = {
        "occurred_at": datetime.now(UTC) - timedelta(hours=2),
        "chief_complaint": "Wheezing at night for three weeks",
        "history_of_present_illness": "Worse after exercise; no fever.",
        "examination": "Expiratory wheeze, both lungs.",
        "assessment": "Poorly controlled asthma",
        "plan": "Step up inhaled therapy; review in four weeks.",
        "diagnoses": [rec.Diagnosis(code="J45.9", description="Asthma, unspecified")],
        "vital_signs": rec.VitalSigns(
            blood_pressure=rec.BloodPressure(systolic=128, diastolic=82),
            heart_rate=rec.HeartRate(value=88),
            temperature=rec.Temperature(value=36.9, unit="Cel"),
            respiratory_rate=rec.RespiratoryRate(value=18),
            oxygen_saturation=rec.OxygenSaturation(value=95),
            weight=rec.Weight(value=71.5, unit="kg"),
            height=rec.Height(value=168, unit="cm"),
        ),
        "allergies": [
            rec.Allergy(substance="Penicillin", reaction="hives", severity="moderate"),
        ],
    }
    values.update(overrides)
    return rec.EncounterContent(**values)


def medication(**overrides: Any) -> rec.Medication:
    values: dict[str, Any] = {
        "drug_name": "Budesonide/Formoterol",
        "strength": "200/6 micrograms",
        "dosage_form": rec.DosageForm.inhaler,
        "dose": "2 puffs",
        "route": rec.Route.inhalation,
        "frequency": "twice daily",
        "duration_days": 28,
        "quantity": 1,
        "refills": 2,
        "instructions": "Rinse your mouth after each use.",
        "free_text": True,  # catalog prescriptions: tests/records/test_catalog.py
    }
    values.update(overrides)
    return rec.Medication(**values)


def sign(doctor: StaffMember, core: rec.PrescriptionCore) -> str:
    """What the physician's client does: Ed25519 over the canonical prescription."""
    return base64.b64encode(doctor.key.sign(rec.canonical_prescription(core))).decode()


OVERRIDE = "Reviewed with the patient: the benefit outweighs the risk."


def signed_request(
    doctor: StaffMember,
    patient_id: str,
    encounter_id: str,
    *,
    created_at: datetime | None = None,
    alerts: list[str] | None = None,
    override_reason: str | None = None,
    **med: Any,
) -> rec.PrescribeRequest:
    """A prescription as the client signs it; with `alerts`, overridden (with a reason)."""
    request = rec.PrescribeRequest(
        prescription_id=key(),
        patient_id=patient_id,
        encounter_id=encounter_id,
        created_at=created_at or datetime.now(UTC),
        medication=medication(**med),
        alerts=alerts or [],
        override_reason=override_reason
        if override_reason is not None
        else (OVERRIDE if alerts else ""),
        signature="A" * 86 + "==",
    )
    signature = sign(doctor, request.core(doctor.account_id))
    return request.model_copy(update={"signature": signature})


def event(type_: str, patient_id: str) -> Callable[[AuditEvent], bool]:
    """Matches the audit events of one type about one patient."""
    return lambda a: a.type == type_ and a.concerns(patient_id)


@dataclass
class KeyvaultCounter:
    """Counts the keyvault's DECRYPT/BLIND_INDEX calls and the rows they decrypt, and
    every keyvault method the records service calls (`requests`, by method name)."""

    decrypt_calls: int = 0
    decrypted_rows: int = 0
    decrypted_tables: list[str] = field(default_factory=list)
    blind_index_calls: int = 0
    requests: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.decrypt_calls = self.decrypted_rows = self.blind_index_calls = 0
        self.decrypted_tables.clear()
        self.requests.clear()

    def watch(self, service: Runtime) -> None:
        """Count the keyvault methods `service` calls (it calls them as the code does)."""
        call = service.rpc.call

        async def counting_call(method: RpcMethod[Any, Any], *args: Any, **kwargs: Any) -> Any:
            if method.service == kv.SERVICE:
                self.requests.append(method.name)
            return await call(method, *args, **kwargs)

        service.rpc.call = counting_call  # type: ignore[method-assign]


def count_keyvault(vault: Vault) -> KeyvaultCounter:
    counter = KeyvaultCounter()
    decrypt, blind = vault.decrypt, vault.blind_indexes

    async def counting_decrypt(rows: Any) -> tuple[list[dict[str, str]], list[int]]:
        counter.decrypt_calls += 1
        counter.decrypted_rows += len(rows)
        counter.decrypted_tables.extend(r.table for r in rows)
        return await decrypt(rows)

    def counting_blind(queries: Any) -> list[str]:
        counter.blind_index_calls += 1
        return blind(queries)

    vault.decrypt = counting_decrypt  # type: ignore[method-assign]
    vault.blind_indexes = counting_blind  # type: ignore[method-assign]
    return counter


@dataclass
class World:
    clinic: Clinic
    service: Runtime
    audits: list[AuditEvent]
    keyvault: KeyvaultCounter
    staff: dict[str, StaffMember] = field(default_factory=dict)
    appointments: set[tuple[str, str]] = field(default_factory=set)
    """(physician, patient) pairs the stand-in scheduling has an appointment for;
    `ALL` relates everyone (the default of most tests, which are not about access)."""
    scheduling: Runtime | None = None
    """The stand-in scheduling service (on the bus as scheduling's broker identity: the
    caller of `records.patient_ref`)."""

    async def member(self, name: str, role: Role) -> StaffMember:
        if name not in self.staff:
            self.staff[name] = await self.clinic.add_staff(name, role)
        return self.staff[name]

    async def desk(self, name: str = "desk") -> StaffMember:
        return await self.member(name, Role.receptionist)

    async def doctor(self, name: str = "dr-house") -> StaffMember:
        return await self.member(name, Role.physician)

    async def admin(self) -> StaffMember:
        return await self.member("admin", Role.administrator)

    async def call(
        self, method: RpcMethod[ReqT, RespT], request: ReqT, staff: StaffMember, **kwargs: Any
    ) -> RespT:
        """As `staff` through the gateway; writes get a fresh idempotency key."""
        if method.write and "idempotency_key" not in kwargs:
            kwargs["idempotency_key"] = key()
        return await self.clinic.call(method, request, staff, **kwargs)

    async def register(self, **overrides: Any) -> rec.PatientWritten:
        return await self.call(
            rec.CREATE_PATIENT,
            rec.CreatePatientRequest(
                demographics=demographics(**overrides), confirm_duplicate=True
            ),
            await self.desk(),
        )

    async def encounter(
        self, patient_id: str, doctor: StaffMember | None = None, **overrides: Any
    ) -> rec.EncounterWritten:
        return await self.call(
            rec.ADD_ENCOUNTER,
            rec.AddEncounterRequest(patient_id=patient_id, content=content(**overrides)),
            doctor or await self.doctor(),
        )

    async def check(
        self, patient_id: str, doctor: StaffMember | None = None, **med: Any
    ) -> rec.SafetyCheck:
        """The prescribing check of `medication(**med)` for the patient."""
        request = rec.CheckPrescriptionRequest(patient_id=patient_id, medication=medication(**med))
        return await self.call(rec.CHECK_PRESCRIPTION, request, doctor or await self.doctor())

    async def prescribe(
        self, patient_id: str, encounter_id: str, doctor: StaffMember | None = None, **med: Any
    ) -> rec.PrescriptionWritten:
        """As the web app does: check, then sign, overriding whatever the check found
        (tests about the alerts themselves: tests/records/test_safety.py)."""
        doctor = doctor or await self.doctor()
        found = await self.check(patient_id, doctor, **med)
        request = signed_request(doctor, patient_id, encounter_id, alerts=found.codes, **med)
        return await self.call(rec.PRESCRIBE, request, doctor)

    async def audited(
        self, match: Callable[[AuditEvent], bool], timeout_s: float = 3.0
    ) -> list[AuditEvent]:
        """The collected audit events that `match`, waiting a little for them to arrive."""
        for _ in range(int(timeout_s / 0.05)):
            found = [a for a in self.audits if match(a)]
            if found:
                return found
            await asyncio.sleep(0.05)
        return []


@asynccontextmanager
async def world(tag: str) -> AsyncIterator[World]:
    audits: list[AuditEvent] = []

    def collect(_: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[AuditEvent]) -> None:
            audits.append(event.payload)

        return handle

    consumers = [ConsumerSpec(f"{tag}-audit", [AUDIT_RECORDED], collect)]
    async with clinic(tag, client_consumers=consumers) as c:
        counter = count_keyvault(vault_of(c.keyvault))
        appointments: set[tuple[str, str]] = set()
        scheduling = await Runtime.start(
            sched.SERVICE, c.settings, router=stand_in_scheduling(appointments), use_database=False
        )
        service = await Runtime.start(
            rec.SERVICE,
            c.settings,
            router=router,
            migrations=MIGRATIONS,
            on_startup=start_access_server,
            on_shutdown=stop_access_server,
        )
        counter.watch(service)
        c.services.append(service)
        try:
            appointments.add(ALL)
            yield World(
                c, service, audits, counter, appointments=appointments, scheduling=scheduling
            )
        finally:
            await service.stop()
            await scheduling.stop()


def stand_in_scheduling(appointments: set[tuple[str, str]]) -> RpcRouter:
    """Answers `scheduling.care_relationship` from (physician, patient) pairs the test sets;
    a world starts with every physician related to every patient (ALL) unless told."""
    router = RpcRouter(sched.SERVICE)

    @router.handler(sched.CARE_RELATIONSHIP)
    async def care(req: sched.CareRelationshipRequest, ctx: CallContext) -> sched.CareRelationship:
        exists = ALL in appointments or (req.physician_id, req.patient_id) in appointments
        return sched.CareRelationship(exists=exists)

    return router


ALL = ("*", "*")
