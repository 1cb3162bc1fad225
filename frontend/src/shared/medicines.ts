// The catalog's vocabularies a medicine is described with (the contracts' enums, in the
// order the forms offer them), for the catalog screen and the free-text prescription.
import type { DosageForm, Medicine, Route } from "./api/types";

/** A catalog medicine's active ingredients (its one active ingredient when it names no list). */
export function ingredientsOf(m: Medicine, separator: string): string {
  return m.ingredients.length ? m.ingredients.join(separator) : m.details.active_ingredient;
}

export const DOSAGE_FORMS: DosageForm[] = [
  "tablet",
  "capsule",
  "oral_solution",
  "oral_suspension",
  "syrup",
  "injection",
  "infusion",
  "cream",
  "ointment",
  "gel",
  "patch",
  "inhaler",
  "drops",
  "spray",
  "suppository",
  "powder",
  "lozenge",
];

export const ROUTES: Route[] = [
  "oral",
  "sublingual",
  "buccal",
  "topical",
  "transdermal",
  "inhalation",
  "nasal",
  "ophthalmic",
  "otic",
  "intravenous",
  "intramuscular",
  "subcutaneous",
  "rectal",
  "vaginal",
];
