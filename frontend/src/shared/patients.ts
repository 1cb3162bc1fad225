// Patients as every screen names and finds them.
import { useCallback, useLayoutEffect, useRef, useState } from "react";

import { must, type Session } from "./api/client";
import type { PatientBrief } from "./api/types";

export function fullName(p: { given_name: string; family_name: string }): string {
  return `${p.given_name} ${p.family_name}`;
}

export interface SearchParams {
  family_name?: string;
  date_of_birth?: string;
  phone?: string;
  mrn?: string;
}

/** Patient search (blind indexes on the server: no table is decrypted): family name and
 * date of birth (spelling-tolerant: Schmitt finds Schmidt, exact spellings first), phone
 * (any notation of the clinic's region), or record number. Empty values are left out;
 * nothing at all, or a name without its birth date, is refused here in words. */
export async function searchPatients(session: Session, params: SearchParams): Promise<PatientBrief[]> {
  const given = Object.fromEntries(Object.entries(params).filter(([, value]) => value)) as SearchParams;
  if (Object.keys(given).length === 0) {
    throw new Error("Give a family name and date of birth, a phone number or a record number.");
  }
  if (Boolean(given.family_name) !== Boolean(given.date_of_birth)) {
    throw new Error("A search by name needs both the family name and the date of birth.");
  }
  const criteria = (given.family_name ? 1 : 0) + (given.phone ? 1 : 0) + (given.mrn ? 1 : 0);
  if (criteria > 1) {
    throw new Error("Search by one thing at a time: name and birth date, or phone, or record number.");
  }
  const result = await must(session.api.GET("/api/v1/patients/search", { params: { query: given } }));
  return result.patients;
}

/** The most patients one briefs read names (the contract's BRIEFS_MAX). */
export const BRIEFS_MAX = 200;

/** Patients' names for lists of appointments (kept in memory only, never in browser
 * storage): `learn(ids)` reads those not known yet in ONE request (`POST /patients/briefs`:
 * one audit event naming them all, one token of the patient-data rate limit), not one per
 * patient. Those the caller may not see (a physician without a care relationship) are
 * `withheld` and keep their ids; a failed read throws (the screen shows the error) and the
 * next `learn` asks again. `label` says how a name is shown. */
export function usePatientNames(
  session: Session,
  label: (p: PatientBrief) => string,
): { names: Record<string, string>; withheld: ReadonlySet<string>; learn: (ids: string[]) => Promise<void> } {
  const [names, setNames] = useState<Record<string, string>>({});
  const [withheld, setWithheld] = useState<ReadonlySet<string>>(new Set());
  const known = useRef(new Set<string>());
  const labelRef = useRef(label);
  useLayoutEffect(() => {
    labelRef.current = label;
  });
  const learn = useCallback(
    async (ids: string[]) => {
      const missing = [...new Set(ids)].filter((x) => !known.current.has(x));
      for (let i = 0; i < missing.length; i += BRIEFS_MAX) {
        const result = await must(
          session.api.POST("/api/v1/patients/briefs", { body: { patient_ids: missing.slice(i, i + BRIEFS_MAX) } }),
        );
        for (const id of [...result.patients.map((p) => p.patient_id), ...result.withheld]) known.current.add(id);
        const learnt = Object.fromEntries(result.patients.map((p) => [p.patient_id, labelRef.current(p)]));
        setNames((n) => ({ ...n, ...learnt }));
        if (result.withheld.length) setWithheld((w) => new Set([...w, ...result.withheld]));
      }
    },
    [session],
  );
  return { names, withheld, learn };
}
