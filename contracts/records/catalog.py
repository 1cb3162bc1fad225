"""Vocabularies, no patient data: the medicine catalog, the drug vocabulary and ICD-10."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from contracts.base import HttpRoute, Model, Role, RpcMethod
from contracts.records.common import CLINICAL, SERVICE, SignedLongText, SignedText, Uuid
from contracts.records.prescriptions import DosageForm, Route

MEDICINE_TABLE = "medicines"


class MedicineType(StrEnum):
    analgesic = "analgesic"
    antibiotic = "antibiotic"
    antiviral = "antiviral"
    antifungal = "antifungal"
    antihypertensive = "antihypertensive"
    antidiabetic = "antidiabetic"
    anticoagulant = "anticoagulant"
    antihistamine = "antihistamine"
    bronchodilator = "bronchodilator"
    corticosteroid = "corticosteroid"
    lipid_lowering = "lipid_lowering"
    antidepressant = "antidepressant"
    gastrointestinal = "gastrointestinal"
    other = "other"


class MedicineDetails(Model):
    """A catalog entry's content; prescriptions copy name, strength, form and route."""

    name: SignedText
    active_ingredient: SignedText
    strength: SignedText
    dosage_form: DosageForm
    route: Route
    type: MedicineType
    default_instructions: SignedLongText = ""


class Medicine(Model):
    medicine_id: str
    details: MedicineDetails
    active: bool
    updated_at: datetime
    ingredients: list[str] = Field(
        default=[],
        description="Its active ingredients in the drug vocabulary (from `active_ingredient`).",
    )
    classes: list[str] = Field(
        default=[], description="Every drug class of those ingredients (with parent classes)."
    )


class AddMedicineRequest(Model):
    details: MedicineDetails


class UpdateMedicineRequest(Model):
    medicine_id: Uuid
    details: MedicineDetails


class RetireMedicineRequest(Model):
    medicine_id: Uuid


class GetMedicineRequest(Model):
    medicine_id: Uuid


class SearchMedicinesRequest(Model):
    """Prefix of the name or the active ingredient (case-insensitive), and/or a type."""

    prefix: str = Field(default="", max_length=100)
    type: MedicineType | None = None
    include_retired: bool = False
    limit: int = Field(default=20, ge=1, le=100)


class MedicineList(Model):
    medicines: list[Medicine]


class SubstanceKind(StrEnum):
    ingredient = "ingredient"
    drug_class = "class"


class Substance(Model):
    """An entry of the drug vocabulary: what allergies are recorded against."""

    code: str = Field(examples=["class:penicillins"])
    kind: SubstanceKind
    name: str = Field(examples=["penicillins"])
    title: str = Field(examples=["penicillins"], description="How it reads in a list.")
    classes: list[str] = Field(default=[], description="Of an ingredient: its classes.")


class SearchSubstancesRequest(Model):
    """Prefix of a word of the name, a synonym or the title (any case)."""

    prefix: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    limit: int = Field(default=20, ge=1, le=100)


class SubstanceList(Model):
    substances: list[Substance]
    notice: str = Field(description="Where the vocabulary comes from (sample data, say so).")


class SearchIcd10Request(Model):
    """Code prefix (`J45`, `e11.9`) or words of the title (`asthma`, `type 2 diab`)."""

    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    limit: int = Field(default=20, ge=1, le=50)


class Icd10Entry(Model):
    code: str = Field(examples=["J45.9"])
    title: str = Field(examples=["Asthma, unspecified"])


class Icd10List(Model):
    entries: list[Icd10Entry]
    classification: str = Field(examples=["WHO ICD-10 2019"])


CATALOG_ADMIN = frozenset({Role.administrator})
CATALOG_READERS = frozenset({Role.administrator, Role.physician})
ADD_MEDICINE = RpcMethod(
    SERVICE,
    "records.add_medicine",
    AddMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute("POST", "/catalog/medicines", status=201),
)
UPDATE_MEDICINE = RpcMethod(
    SERVICE,
    "records.update_medicine",
    UpdateMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute(
        "PUT",
        "/catalog/medicines/{medicine_id}",
        summary="Edit an entry; prescriptions already signed keep the details they copied.",
    ),
)
RETIRE_MEDICINE = RpcMethod(
    SERVICE,
    "records.retire_medicine",
    RetireMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute(
        "POST",
        "/catalog/medicines/{medicine_id}/retire",
        summary="No new prescriptions of it; existing ones are unaffected.",
    ),
)
GET_MEDICINE = RpcMethod(
    SERVICE,
    "records.get_medicine",
    GetMedicineRequest,
    Medicine,
    roles=CATALOG_READERS,
    route=HttpRoute("GET", "/catalog/medicines/{medicine_id}"),
)
SEARCH_MEDICINES = RpcMethod(
    SERVICE,
    "records.search_medicines",
    SearchMedicinesRequest,
    MedicineList,
    roles=CATALOG_READERS,
    route=HttpRoute(
        "GET",
        "/catalog/medicines",
        query=("prefix", "type", "include_retired", "limit"),
        summary="By prefix of the name or the active ingredient (any case), and/or by type.",
    ),
)
SEARCH_SUBSTANCES = RpcMethod(
    SERVICE,
    "records.search_substances",
    SearchSubstancesRequest,
    SubstanceList,
    roles=CATALOG_READERS,
    route=HttpRoute(
        "GET",
        "/catalog/substances",
        query=("prefix", "limit"),
        summary="The drug vocabulary (ingredients and classes) that allergies are recorded "
        "against, by prefix of any word.",
    ),
)
SEARCH_ICD10 = RpcMethod(
    SERVICE,
    "records.search_icd10",
    SearchIcd10Request,
    Icd10List,
    roles=CLINICAL,
    route=HttpRoute(
        "GET",
        "/icd10",
        query=("q", "limit"),
        summary="Diagnoses of the WHO ICD-10 classification by code prefix or title words; "
        "encounters accept only codes of it.",
    ),
)
CATALOG_METHODS = (
    ADD_MEDICINE,
    UPDATE_MEDICINE,
    RETIRE_MEDICINE,
    GET_MEDICINE,
    SEARCH_MEDICINES,
    SEARCH_SUBSTANCES,
    SEARCH_ICD10,
)
"""Vocabularies, no patient data: the medicine catalog (administrators edit it, physicians
search it), the drug vocabulary and the ICD-10 classification."""
