// Medication history: every prescription of the patient, active, completed and cancelled
// (cancelled ones with who, when and why: they do not disappear), each with the safety
// alerts overridden at signing and the reason; verify, print, complete or cancel one.
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import { useApp } from "../shared/context";
import { when } from "../shared/time";
import { Field, field, Status, useAction } from "../shared/ui";
import { type Medication } from "./prescription";
import { alertLabel } from "./format";
import { PrintView } from "./PrintView";
import type { AllergyEntry, Patient, Prescription, PrescriptionStatus, Verification } from "./types";
import { writeOnce } from "../shared/submit";

const GROUPS: [PrescriptionStatus, string][] = [
  ["active", "Active prescriptions"],
  ["completed", "Completed prescriptions"],
  ["cancelled", "Cancelled prescriptions"],
];

export function medicationText(m: Medication): string {
  const form = `(${m.dosage_form.replace(/_/g, " ")}, ${m.route})`;
  return `${form}: ${m.dose}, ${m.frequency}, ${m.duration_days} days, quantity ${m.quantity}, ${m.refills} refills`;
}

export function verdict(v: Verification): string {
  const earlier = v.signer_key_current === false ? " (signed with an earlier key of the prescriber)" : "";
  return v.valid
    ? `Signature verified: the prescriber's Ed25519 signature and the record's integrity MAC are valid${earlier}.`
    : `Not valid: ${v.problems.join("; ")}`;
}

export function MedicationHistory(props: {
  patient: Patient;
  allergies: AllergyEntry[];
  generation: number;
  name: (accountId: string) => string;
  onChanged: () => Promise<void>;
}): ReactNode {
  const { session } = useApp();
  const load = useAction();
  const action = useAction();
  const patientId = props.patient.patient_id;
  const [list, setList] = useState<{ prescriptions: Prescription[]; integrity_failures: string[] } | null>(null);
  const [verified, setVerified] = useState<Record<string, Verification>>({});
  const [cancelling, setCancelling] = useState<string | null>(null);
  const [printing, setPrinting] = useState<Prescription | null>(null);

  const fetchList = useCallback(async () => {
    setList(
      await must(
        session.api.GET("/api/v1/patients/{patient_id}/prescriptions", { params: { path: { patient_id: patientId } } }),
      ),
    );
  }, [session, patientId]);
  useEffect(() => {
    void load.run(fetchList);
  }, [fetchList, props.generation]); // eslint-disable-line react-hooks/exhaustive-deps

  const all = list?.prescriptions ?? [];
  const label = (code: string): string =>
    alertLabel(
      code,
      (id) => props.allergies.find((a) => a.allergy_id === id)?.substance,
      (id) => {
        const other = all.find((p) => p.prescription_id === id);
        return other ? `${other.medication.drug_name} ${other.medication.strength}` : undefined;
      },
    );
  const changed = async (): Promise<void> => {
    await props.onChanged();
  };

  const card = (rx: Prescription): ReactNode => {
    const m = rx.medication;
    const v = verified[rx.prescription_id];
    return (
      <li key={rx.prescription_id} className={`card rx ${rx.status}`}>
        <strong>
          {m.drug_name} {m.strength}
        </strong>{" "}
        {medicationText(m)}
        {m.free_text ? " · free text (outside the catalog)" : ""}
        {m.instructions && <div className="hint">{m.instructions}</div>}
        <div className="hint">
          Signed {when(rx.created_at)} by {props.name(rx.prescriber_id)}
        </div>
        {rx.alerts.length > 0 && (
          <div className="override" data-testid="override">
            <strong>Overridden alerts:</strong> {rx.alerts.map(label).join("; ")}.
            <div>Reason: {rx.override_reason}</div>
          </div>
        )}
        {rx.status === "cancelled" && (
          <div className="cancelled" data-testid="cancellation">
            Cancelled{rx.status_changed_at ? ` ${when(rx.status_changed_at)}` : ""}
            {rx.status_changed_by ? ` by ${props.name(rx.status_changed_by)}` : ""}: {rx.cancellation_reason}
          </div>
        )}
        {rx.status === "completed" && (
          <div className="hint">
            Completed{rx.status_changed_at ? ` ${when(rx.status_changed_at)}` : ""}
            {rx.status_changed_by ? ` by ${props.name(rx.status_changed_by)}` : ""}
          </div>
        )}
        <div className="buttons">
          <button
            className="secondary"
            onClick={() =>
              void action.run(async () => {
                const result = await must(
                  session.api.GET("/api/v1/prescriptions/{prescription_id}/verify", {
                    params: { path: { prescription_id: rx.prescription_id } },
                  }),
                );
                setVerified((known) => ({ ...known, [rx.prescription_id]: result }));
              })
            }
          >
            Verify signature
          </button>
          <button className="secondary" onClick={() => setPrinting(rx)}>
            Printable prescription
          </button>
          {rx.status === "active" && (
            <>
              <button
                className="secondary"
                onClick={() =>
                  void action.run(async () => {
                    await writeOnce(
                      "/api/v1/prescriptions/{prescription_id}/complete",
                      {
                        params: { path: { prescription_id: rx.prescription_id } },
                      },
                      (o) => must(session.api.POST("/api/v1/prescriptions/{prescription_id}/complete", o)),
                    );
                    await changed();
                    return `Prescription of ${m.drug_name} marked completed.`;
                  })
                }
              >
                Mark completed
              </button>
              <button className="secondary" onClick={() => setCancelling(rx.prescription_id)}>
                Cancel prescription
              </button>
            </>
          )}
        </div>
        {v && (
          <p className={v.valid ? "ok" : "error"} role="status" data-testid="verification">
            {verdict(v)}
          </p>
        )}
        {cancelling === rx.prescription_id && (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              const reason = field(e.currentTarget, "rx_cancel_reason");
              void action.run(async () => {
                await writeOnce(
                  "/api/v1/prescriptions/{prescription_id}/cancel",
                  {
                    params: { path: { prescription_id: rx.prescription_id } },
                    body: { reason },
                  },
                  (o) => must(session.api.POST("/api/v1/prescriptions/{prescription_id}/cancel", o)),
                );
                setCancelling(null);
                await changed();
                return `Prescription of ${m.drug_name} cancelled.`;
              });
            }}
          >
            <Field label="Reason for cancelling" name="rx_cancel_reason" required action={action} />
            <button className="danger">Confirm cancellation</button>
            <button type="button" className="secondary" onClick={() => setCancelling(null)}>
              Keep it
            </button>
          </form>
        )}
      </li>
    );
  };

  return (
    <>
      <h3>Medication history</h3>
      <Status action={load} />
      <Status action={action} />
      {list && list.integrity_failures.length > 0 && (
        <p className="error" role="alert">
          {list.integrity_failures.length} prescription(s) failed their integrity check (edited outside Medihaven) and
          are not shown.
        </p>
      )}
      {list &&
        GROUPS.map(([status, title]) => {
          const shown = all.filter((p) => p.status === status).sort((a, b) => b.created_at.localeCompare(a.created_at));
          if (status !== "active" && shown.length === 0) return null;
          return (
            <div key={status}>
              <h4>{title}</h4>
              {shown.length === 0 && <p>None.</p>}
              <ul className="plain" aria-label={title}>
                {shown.map(card)}
              </ul>
            </div>
          );
        })}
      {printing && (
        <PrintView
          prescription={printing}
          patient={props.patient}
          prescriber={props.name(printing.prescriber_id)}
          alertLabel={label}
          onClose={() => setPrinting(null)}
        />
      )}
    </>
  );
}
