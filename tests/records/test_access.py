"""The role matrix of every records method, over the bus, and forged principals.

Roles come from the contract (checked by the runtime before any handler runs):
receptionists register, update and search patients; physicians read and write everything
clinical; administrators get no patient data at all. A principal in the headers proves
nothing by itself: every patient-data method is served only for the caller's own fresh
signature of that very request (checked by the runtime before the role, and again by the
keyvault for what it decrypts), so a request without one gets 401 whatever the role, and
a forged principal with a permitted role gets 401 too. `records.patient_ref` is asked by
the scheduling service only (its broker identity), with no user signature at all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from contracts import fhir, fhirexport
from contracts import records as rec
from contracts.base import Principal, Role, RpcMethod
from contracts.common import ping
from mesh.errors import Forbidden, RpcError, Unauthenticated
from tests.records.support import (
    World,
    content,
    demographics,
    medication,
    signed_request,
    world,
)
from tests.support.clinic import StaffMember

D, P = "receptionist", "physician"
ALLOWED: dict[str, set[str]] = {
    rec.PATIENT_REF.name: {"administrator", P, D, "nobody"},
    rec.CREATE_PATIENT.name: {D},
    rec.UPDATE_PATIENT.name: {D},
    rec.SET_CLINICAL_FLAGS.name: {P},
    rec.GET_PATIENT.name: {D, P},
    rec.LIST_RECENT_PATIENTS.name: {D, P},
    rec.PATIENT_BRIEFS.name: {D, P},
    rec.SEARCH_PATIENTS.name: {D, P},
    rec.ADD_ENCOUNTER.name: {P},
    rec.AMEND_ENCOUNTER.name: {P},
    rec.GET_ENCOUNTER.name: {P},
    rec.LIST_ENCOUNTERS.name: {P},
    rec.CHECK_PRESCRIPTION.name: {P},
    rec.PRESCRIBE.name: {P},
    rec.CANCEL_PRESCRIPTION.name: {P},
    rec.COMPLETE_PRESCRIPTION.name: {P},
    rec.GET_PRESCRIPTION.name: {P},
    rec.LIST_PRESCRIPTIONS.name: {P},
    rec.VERIFY_PRESCRIPTION.name: {P},
    rec.PATIENT_SUMMARY.name: {P},
    rec.LIST_ALLERGIES.name: {P},
    rec.RECORD_ALLERGY.name: {P},
    rec.CHANGE_ALLERGY.name: {P},
}
METHODS: list[RpcMethod[Any, Any]] = [rec.PATIENT_REF, *rec.PATIENT_DATA_METHODS]
LATEX = rec.Allergy(substance="Latex", code="class:latex", severity=rec.AllergySeverity.severe)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recaccess") as w:
        yield w


def test_the_table_covers_every_method_of_the_contract() -> None:
    from contracts.common import collect
    from contracts.rewrap import RECORDS_KEY_USAGE

    methods, _ = collect()
    ours = {m.name for m in methods if m.service == rec.SERVICE} - {ping(rec.SERVICE).name}
    ours -= {m.name for m in rec.CATALOG_METHODS}  # no patient data: tests/records/test_catalog.py
    ours -= {m.name for m in (rec.BREAK_GLASS, rec.BREAK_GLASS_REPORT, rec.ACKNOWLEDGE_BREAK_GLASS)}
    # FHIR reads are served by the reads below; their roles and care refusals are checked
    # through the gateway (tests/gateway/test_fhir.py: test_role_matrix, refusals)
    ours -= {m.name for m in fhir.ROUTED}
    # the bulk export: administrators only, two of them (tests/gateway/test_fhir_export.py)
    ours -= {m.name for m in fhirexport.ROUTED}
    # the keyvault's scan before it destroys a key: counts per key, no patient data, and
    # only the keyvault may call it (tests/mesh/test_contract_sweep.py)
    ours -= {RECORDS_KEY_USAGE.name}
    assert ours == set(ALLOWED) == {m.name for m in METHODS}
    for method in METHODS:
        expected = None if method is rec.PATIENT_REF else frozenset(map(Role, ALLOWED[method.name]))
        assert method.roles == expected, method.name
    # Administrators get no patient data, by any method.
    assert all("administrator" not in ALLOWED[m.name] for m in rec.PATIENT_DATA_METHODS)


class Cases:
    """A fresh, valid request per method, for `caller` (writes need their own rows)."""

    def __init__(self, w: World, doctor: StaffMember) -> None:
        self.w, self.doctor = w, doctor

    async def patient(self) -> str:
        return (await self.w.register(given_name=f"P{uuid.uuid4().hex[:6]}")).patient_id

    async def encounter(self, patient_id: str) -> str:
        return (await self.w.encounter(patient_id, self.doctor)).encounter_id

    async def prescription(self) -> str:
        patient_id = await self.patient()
        written = await self.w.prescribe(patient_id, await self.encounter(patient_id), self.doctor)
        return written.prescription_id

    async def build(self, method: RpcMethod[Any, Any], caller: StaffMember) -> BaseModel:
        if method is rec.PATIENT_REF:
            return rec.PatientRefRequest(patient_id=await self.patient())
        if method is rec.CREATE_PATIENT:
            return rec.CreatePatientRequest(
                demographics=demographics(given_name=f"N{uuid.uuid4().hex[:6]}"),
                confirm_duplicate=True,  # every case patient shares a name and birth date
            )
        if method is rec.UPDATE_PATIENT:
            return rec.UpdatePatientRequest(
                patient_id=await self.patient(), expected_version=1, demographics=demographics()
            )
        if method is rec.SET_CLINICAL_FLAGS:
            return rec.SetClinicalFlagsRequest(
                patient_id=await self.patient(), flags=[rec.ClinicalFlag.diabetic]
            )
        if method is rec.GET_PATIENT:
            return rec.GetPatientRequest(patient_id=await self.patient())
        if method is rec.LIST_RECENT_PATIENTS:
            return rec.ListRecentPatientsRequest(limit=3)
        if method is rec.PATIENT_BRIEFS:
            return rec.PatientBriefsRequest(patient_ids=[await self.patient()])
        if method is rec.SEARCH_PATIENTS:
            return rec.SearchPatientsRequest(phone="+44 20 7946 0958")
        if method is rec.ADD_ENCOUNTER:
            return rec.AddEncounterRequest(patient_id=await self.patient(), content=content())
        if method is rec.AMEND_ENCOUNTER:
            return rec.AmendEncounterRequest(
                encounter_id=await self.encounter(await self.patient()),
                expected_version=1,
                reason="correction",
                content=content(),
            )
        if method is rec.GET_ENCOUNTER:
            return rec.GetEncounterRequest(encounter_id=await self.encounter(await self.patient()))
        if method is rec.LIST_ENCOUNTERS:
            return rec.ListEncountersRequest(patient_id=await self.patient())
        if method is rec.PRESCRIBE:
            patient_id = await self.patient()
            return signed_request(caller, patient_id, await self.encounter(patient_id))
        if method is rec.CANCEL_PRESCRIPTION:
            return rec.CancelPrescriptionRequest(
                prescription_id=await self.prescription(), reason="stopped"
            )
        if method is rec.COMPLETE_PRESCRIPTION:
            return rec.CompletePrescriptionRequest(prescription_id=await self.prescription())
        if method is rec.GET_PRESCRIPTION:
            return rec.GetPrescriptionRequest(prescription_id=await self.prescription())
        if method is rec.LIST_PRESCRIPTIONS:
            return rec.ListPrescriptionsRequest(patient_id=await self.patient())
        if method is rec.VERIFY_PRESCRIPTION:
            return rec.VerifyPrescriptionRequest(prescription_id=await self.prescription())
        if method is rec.PATIENT_SUMMARY:
            return rec.PatientSummaryRequest(patient_id=await self.patient())
        if method is rec.CHECK_PRESCRIPTION:
            return rec.CheckPrescriptionRequest(
                patient_id=await self.patient(), medication=medication()
            )
        if method is rec.LIST_ALLERGIES:
            return rec.ListAllergiesRequest(patient_id=await self.patient())
        if method is rec.RECORD_ALLERGY:
            return rec.RecordAllergyRequest(patient_id=await self.patient(), allergy=LATEX)
        if method is rec.CHANGE_ALLERGY:
            patient_id = await self.patient()
            request = rec.RecordAllergyRequest(patient_id=patient_id, allergy=LATEX)
            written = await self.w.call(rec.RECORD_ALLERGY, request, self.doctor)
            return rec.ChangeAllergyRequest(
                patient_id=patient_id,
                allergy_id=written.allergy_id,
                expected_version=written.version,
                allergy=LATEX.model_copy(update={"status": rec.AllergyStatus.refuted}),
            )
        raise AssertionError(f"no case for {method.name}")


async def send(
    w: World,
    method: RpcMethod[Any, Any],
    request: BaseModel,
    principal: Principal | None,
    proof: str | None,
    signed_body: bytes | None = None,
) -> BaseModel:
    """As the gateway would send it; `records.patient_ref` as the scheduling service."""
    runtime = w.scheduling if method is rec.PATIENT_REF else w.clinic.client
    assert runtime is not None
    return await runtime.rpc.call(
        method,
        request,
        principal=principal,
        proof=proof,
        signed_body=signed_body,
        idempotency_key=str(uuid.uuid4()) if method.write else None,
    )


async def test_every_method_for_every_role(w: World) -> None:
    staff = {
        "administrator": await w.admin(),
        P: await w.doctor(),
        D: await w.desk(),
    }
    cases = Cases(w, staff[P])
    outcomes: list[str] = []
    for method in METHODS:
        for role in ("administrator", P, D, "nobody"):
            caller = staff.get(role, staff[P])
            request = await cases.build(method, caller)
            principal = caller.principal if role != "nobody" else None
            proof, body = (
                caller.signed(method, request)
                if role != "nobody" and method.route
                else (None, None)
            )
            try:
                await send(w, method, request, principal, proof, body)
                outcome = "ok"
            except Forbidden:
                outcome = "forbidden"
            except Unauthenticated:
                outcome = "unauthenticated"
            except RpcError as exc:
                outcome = f"{exc.code.value}: {exc.message}"
            expected = (
                "ok"
                if role in ALLOWED[method.name]
                else "unauthenticated"  # no signature: refused before any role check
                if role == "nobody"
                else "forbidden"
            )
            if outcome != expected:
                outcomes.append(f"{method.name} as {role}: expected {expected}, got {outcome}")
    assert not outcomes, "\n".join(outcomes)


async def test_forged_principals_with_a_permitted_role_get_nothing(w: World) -> None:
    """Someone on the bus puts a real staff member in the headers, without that
    member's own fresh signature (none at all, or one made with another key)."""
    doctor, desk = await w.doctor(), await w.desk()
    intruder = await w.member("intruder", Role.physician)
    cases = Cases(w, doctor)
    failures: list[str] = []
    for method in rec.PATIENT_DATA_METHODS:
        victim = doctor if "physician" in ALLOWED[method.name] else desk
        forgeries = {
            "no proof": None,
            "another key": victim.proof(key=intruder.key),
            "another's proof": intruder.proof(),
        }
        for name, proof in forgeries.items():
            request = await cases.build(method, victim)
            try:
                await send(w, method, request, victim.principal, proof)
                failures.append(f"{method.name} ({name}): accepted")
            except Unauthenticated:
                pass
            except RpcError as exc:
                failures.append(f"{method.name} ({name}): {exc.code.value} {exc.message}")
    assert not failures, "\n".join(failures)


async def test_patient_ref_is_for_the_scheduling_service_only(w: World) -> None:
    """Asked by scheduling (no signature needed: it decrypts nothing); by anyone else on
    the bus, even the gateway with a signed-in member's principal, refused."""
    patient = await w.register(given_name="Referenced")
    request = rec.PatientRefRequest(patient_id=patient.patient_id)
    assert w.scheduling is not None
    assert (await w.scheduling.rpc.call(rec.PATIENT_REF, request)).exists
    desk = await w.desk()
    with pytest.raises(Forbidden, match="may not call"):
        await w.clinic.client.rpc.call(rec.PATIENT_REF, request, principal=desk.principal)


@pytest.mark.parametrize("role", [Role.administrator, Role.receptionist])
async def test_no_clinical_data_for_other_roles_even_when_signed(w: World, role: Role) -> None:
    caller = await w.member(f"curious-{role.value}", role)
    patient = await w.register(given_name="Private")
    with pytest.raises(Forbidden):
        await w.call(
            rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient.patient_id), caller
        )
