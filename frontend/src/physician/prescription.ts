// The canonical prescription a physician signs: the same bytes as
// contracts.records.canonical_prescription (JSON, keys sorted, no spaces, UTF-8).
import { b64 } from "../shared/api/httpsig";
import type { DosageForm, Route } from "../shared/api/types";

export interface Medication {
  drug_name: string;
  strength: string;
  dosage_form: DosageForm;
  dose: string;
  route: Route;
  frequency: string;
  duration_days: number;
  quantity: number;
  refills: number;
  instructions: string;
  medicine_id: string;
  free_text: boolean;
}

export interface PrescriptionCore {
  prescription_id: string;
  patient_id: string;
  prescriber_id: string;
  encounter_id: string;
  created_at: string; // YYYY-MM-DDTHH:MM:SS.ffffffZ
  medication: Medication;
  // Codes of the safety alerts overridden at signing (sorted), and why; signed when present.
  alerts?: string[];
  override_reason?: string;
}

export function timestamp(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export function canonicalPrescription(core: PrescriptionCore): string {
  const document: Record<string, string | number | boolean | string[]> = {
    context: "medihaven.prescription.v1",
    prescription_id: core.prescription_id,
    patient_id: core.patient_id,
    prescriber_id: core.prescriber_id,
    encounter_id: core.encounter_id,
    created_at: core.created_at,
    ...core.medication,
  };
  if (core.alerts && core.alerts.length > 0) {
    document.alerts = [...core.alerts].sort();
    document.override_reason = core.override_reason ?? "";
  }
  const sorted = Object.fromEntries(
    Object.keys(document)
      .sort()
      .map((k) => [k, document[k]]),
  );
  return JSON.stringify(sorted);
}

export async function signPrescription(key: CryptoKey, core: PrescriptionCore): Promise<string> {
  const bytes = new TextEncoder().encode(canonicalPrescription(core));
  return b64(await crypto.subtle.sign({ name: "Ed25519" }, key, bytes as BufferSource));
}
