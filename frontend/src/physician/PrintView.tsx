// A printable prescription: the page prints only this (CSS @media print), with the
// patient, the prescriber, the medication, any overridden alerts and the reason, the
// signature's fingerprint and the verification id that `medihaven rx verify` and the app's
// "Verify a prescription" box take.
import { useEffect, useRef, useState, type ReactNode } from "react";
import { createPortal } from "react-dom";

import { age } from "../shared/age";
import { fullName } from "../shared/patients";
import { Terms, words } from "../shared/ui";
import { fingerprint } from "./format";
import type { Patient, Prescription } from "./types";

function printedDate(value: string): string {
  return new Date(value).toLocaleString("en-GB", {
    day: "numeric",
    month: "long",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

export function PrintView(props: {
  prescription: Prescription;
  patient: Patient;
  prescriber: string;
  alertLabel: (code: string) => string;
  onClose: () => void;
}): ReactNode {
  const { prescription: rx, patient } = props;
  const m = rx.medication;
  const d = patient.demographics;
  const [print, setPrint] = useState("");
  const printButton = useRef<HTMLButtonElement>(null);
  const { onClose } = props;
  useEffect(() => {
    let live = true;
    fingerprint(rx.signature).then(
      (value) => live && setPrint(value),
      () => live && setPrint("(the signature could not be read)"),
    );
    return () => {
      live = false;
    };
  }, [rx.signature]);
  useEffect(() => {
    printButton.current?.focus();
    const onKey = (e: KeyboardEvent): void => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  const rows: [string, string][] = [
    ["Medication", `${m.drug_name} ${m.strength}`],
    ["Form and route", `${words(m.dosage_form)}, ${m.route}`],
    ["Dose", m.dose],
    ["Frequency", m.frequency],
    ["Duration", `${m.duration_days} days`],
    ["Quantity", String(m.quantity)],
    ["Refills", String(m.refills)],
    ["Instructions", m.instructions],
  ];
  return createPortal(
    <div className="print-view" role="dialog" aria-modal="true" aria-label="Printable prescription">
      <div className="no-print buttons">
        <button ref={printButton} onClick={() => window.print()}>
          Print
        </button>
        <button className="secondary" onClick={onClose}>
          Close
        </button>
      </div>
      <article className="rx-sheet">
        <h2>Prescription{rx.status !== "active" ? ` (${rx.status})` : ""}</h2>
        <p className="rx-date">Signed {printedDate(rx.created_at)}</p>
        <div className="rx-parties">
          <div>
            <h3>Patient</h3>
            <p data-testid="print-patient">
              <strong>{fullName(d)}</strong>
              <br />
              Born {d.date_of_birth} ({age(d.date_of_birth)})
              <br />
              Record number {patient.mrn}
            </p>
          </div>
          <div>
            <h3>Prescriber</h3>
            <p>
              <strong>{props.prescriber}</strong>
            </p>
          </div>
        </div>
        <Terms className="rx-medication" rows={rows} />
        {m.free_text && <p className="hint">Prescribed as free text (outside the catalog).</p>}
        {rx.alerts.length > 0 && (
          <div className="rx-override">
            <h3>Safety alerts overridden by the prescriber</h3>
            <ul>
              {rx.alerts.map((code) => (
                <li key={code}>{props.alertLabel(code)}</li>
              ))}
            </ul>
            <p>Reason: {rx.override_reason}</p>
          </div>
        )}
        {rx.status === "cancelled" && <p className="rx-cancelled">Cancelled: {rx.cancellation_reason}</p>}
        <div className="rx-verify">
          <p>
            Signature fingerprint (SHA-256): <code data-testid="print-fingerprint">{print}</code>
          </p>
          <p>
            Verification id: <code data-testid="print-verification-id">{rx.prescription_id}</code>
          </p>
          <p>
            Verify with <code>medihaven rx verify {rx.prescription_id}</code> or in Medihaven (Chart, "Verify a
            prescription").
          </p>
        </div>
      </article>
    </div>,
    document.body,
  );
}
