// Finding a patient, the same on every screen that needs one (front desk, chart, booking):
// family name and date of birth (spelling-tolerant on the server, exact spellings first),
// or phone in any notation of the clinic's region, or record number; the matches in a
// table whose last column is the caller's actions.
import { useState, type ReactNode } from "react";

import { age } from "./age";
import { Field, field, Status, useAction } from "./ui";
import type { PatientBrief } from "./api/types";
import { useApp } from "./context";
import { DataTable } from "./DataTable";
import { fullName, searchPatients } from "./patients";

export interface PatientSearchProps {
  /** The section's heading (its region's name). */
  title?: string;
  /** Field names' prefix, so two searches on a page do not share names. */
  prefix?: string;
  /** Offer the phone number as a criterion (the front desk). */
  phone?: boolean;
  actions: (patient: PatientBrief) => ReactNode;
  /** Heading level of the title. */
  level?: 2 | 3;
}

export function PatientSearch({
  title = "Find a patient",
  prefix = "search",
  ...props
}: PatientSearchProps): ReactNode {
  const { session } = useApp();
  const search = useAction();
  const [found, setFound] = useState<{ patients: PatientBrief[]; family: string } | null>(null);
  const id = `${prefix}-title`;
  const Heading = props.level === 3 ? "h3" : "h2";
  const named = (criterion: string): string => `${prefix}_${criterion}`;
  /** A criterion's field: named with the prefix, showing the problem with the criterion. */
  const criterion = (name: string) => ({ name: named(name), shows: name, action: search });
  return (
    <section aria-labelledby={id}>
      <Heading id={id}>{title}</Heading>
      <p className="hint">
        Family name and date of birth (similar spellings are found too: Schmitt finds Schmidt)
        {props.phone ? ", or the phone number as the patient gives it," : ","} or the record number.
      </p>
      <form
        onChange={() => {
          search.clear();
          setFound(null);
        }}
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const typed = (name: string): string => field(form, named(name));
          void search.run(async () => {
            const family = typed("family_name");
            const patients = await searchPatients(session, {
              family_name: family,
              date_of_birth: typed("date_of_birth"),
              phone: props.phone ? typed("phone") : undefined,
              mrn: typed("mrn"),
            });
            setFound({ patients, family });
            return patients.length ? "" : "No patient matches.";
          });
        }}
      >
        <Field label="Family name" {...criterion("family_name")} autoComplete="off" />
        <Field label="Date of birth" {...criterion("date_of_birth")} type="date" />
        {props.phone && <Field label="or phone" {...criterion("phone")} type="tel" autoComplete="off" />}
        <Field label="or record number" {...criterion("mrn")} placeholder="MH-…" autoComplete="off" />
        <button disabled={search.busy}>{search.busy ? "Searching…" : "Search"}</button>
      </form>
      <Status action={search} />
      {found && found.patients.length > 0 && (
        <PatientTable label="Patients found" rows={found.patients} typed={found.family} actions={props.actions} />
      )}
    </section>
  );
}

/** Patients in a table (search results, recently seen), with the caller's actions. */
export function PatientTable(props: {
  label: string;
  rows: PatientBrief[] | null;
  actions: (patient: PatientBrief) => ReactNode;
  /** The family name searched for: other spellings are marked as similar. */
  typed?: string;
  error?: string;
  empty?: string;
}): ReactNode {
  const typed = props.typed?.trim().toLowerCase();
  return (
    <DataTable
      label={props.label}
      rows={props.rows}
      error={props.error}
      rowKey={(p) => p.patient_id}
      empty={props.empty ?? "No patients."}
      columns={[
        { header: "Record", cell: (p) => p.mrn },
        {
          header: "Name",
          cell: (p) => (
            <>
              {fullName(p)}
              {typed && p.family_name.toLowerCase() !== typed && <span className="tag">similar spelling</span>}
            </>
          ),
        },
        {
          header: "Born",
          cell: (p) => (
            <>
              {p.date_of_birth} <span className="hint">({age(p.date_of_birth)})</span>
            </>
          ),
        },
        { header: "Sex", cell: (p) => p.sex },
        { header: "Actions", cell: props.actions },
      ]}
    />
  );
}
