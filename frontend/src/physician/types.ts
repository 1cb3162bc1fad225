// The records API's shapes the physician's screens read: the generated ones (schema.ts,
// from the gateway's OpenAPI document), named as the screens name them.
import type { components } from "../shared/api/schema";

type S = components["schemas"];

export type AllergySeverity = S["AllergySeverity"];
export type AllergyStatus = S["AllergyStatus"];
export type Allergy = S["Allergy"];
export type AllergyEntry = S["AllergyEntry"];
export type AllergyList = S["AllergyList"];
export type Substance = S["Substance"];
export type Icd10Entry = S["Icd10Entry"];
export type Diagnosis = S["Diagnosis"];
export type VitalSigns = S["VitalSigns"];
export type EncounterContent = S["EncounterContent"];
export type Encounter = S["Encounter"];
export type PrescriptionStatus = S["PrescriptionStatus"];
export type Prescription = S["Prescription"];
export type Patient = S["Patient"];
export type Summary = S["PatientSummary"];
export type Verification = S["PrescriptionVerification"];
export type Medicine = S["Medicine"];
export type AlertKind = S["AlertKind"];
export type SafetyAlert = S["SafetyAlert"];
export type SafetyCheck = S["SafetyCheck"];

/** One vital sign's value as the encounter form holds it. */
export interface Quantity {
  value?: number;
  systolic?: number;
  diastolic?: number;
  unit: string;
}
