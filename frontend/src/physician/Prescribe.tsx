// Writing an e-prescription safely: the allergy banner on top; on choosing a medicine
// (catalog or free text) records checks it against the patient's allergies and active
// prescriptions (POST /prescriptions/check). An alert blocks signing until the physician
// writes why they prescribe anyway; the alerts' codes and the reason are signed with the
// prescription (canonicalPrescription). Records checks again at signing and answers 409
// when the alerts changed meanwhile: the check runs again and the new alerts are shown.
import { useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";

import { ApiError, must } from "../shared/api/client";
import { useApp } from "../shared/context";
import { useDraft, useKept } from "../shared/drafts";
import { describe } from "../shared/problems";
import { idempotent, newIdempotencyKey, submitOnce } from "../shared/submit";
import { when } from "../shared/time";
import { bindTo, Field, Select, Status, TextArea, useAction, useProblem, words } from "../shared/ui";
import { type Medication, signPrescription, timestamp } from "./prescription";
import { AllergyBanner } from "./Allergies";
import type { DosageForm, Route } from "../shared/api/types";
import { ingredientsOf } from "../shared/medicines";
import { DrugFormFields } from "../shared/MedicineFields";
import type { AllergyEntry, Medicine, SafetyCheck, Summary } from "./types";
import { Typeahead } from "./Typeahead";

interface RxDraft {
  /** "" stands for the latest encounter. */
  encounter_id: string;
  free_text: boolean;
  query: string;
  medicine: Medicine | null;
  drug_name: string;
  strength: string;
  dosage_form: DosageForm;
  route: Route;
  dose: string;
  frequency: string;
  duration_days: string;
  quantity: string;
  refills: string;
  instructions: string;
  override_reason: string;
}

const emptyRx = (): RxDraft => ({
  encounter_id: "",
  free_text: false,
  query: "",
  medicine: null,
  drug_name: "",
  strength: "",
  dosage_form: "tablet",
  route: "oral",
  dose: "1 tablet",
  frequency: "twice daily",
  duration_days: "7",
  quantity: "14",
  refills: "0",
  instructions: "",
  override_reason: "",
});

type Base = Pick<Medication, "drug_name" | "strength" | "dosage_form" | "route" | "medicine_id" | "free_text">;

/** What the drug is (the part the safety check looks at), or null while it is not chosen. */
function baseOf(d: RxDraft): Base | null {
  if (d.free_text) {
    const drug_name = d.drug_name.trim();
    const strength = d.strength.trim();
    if (!drug_name || !strength) return null;
    return { drug_name, strength, dosage_form: d.dosage_form, route: d.route, medicine_id: "", free_text: true };
  }
  if (!d.medicine) return null;
  const m = d.medicine.details;
  return {
    drug_name: m.name,
    strength: m.strength,
    dosage_form: m.dosage_form,
    route: m.route,
    medicine_id: d.medicine.medicine_id,
    free_text: false,
  };
}

/** The medication to check: the drug chosen; the check does not depend on the dose, so
 * neutral values stand in for it while the form is still being filled in. Records checks
 * the signed prescription itself again. */
function forCheck(base: Base): Medication {
  return { ...base, dose: "1", frequency: "once", duration_days: 1, quantity: 1, refills: 0, instructions: "" };
}

interface Checked {
  identity: string;
  result: SafetyCheck;
}

function SafetyAlerts({ check, changed }: { check: Checked; changed: boolean }): ReactNode {
  const { alerts } = check.result;
  if (alerts.length === 0) {
    return (
      <p className="ok" role="status" data-testid="safety-clear">
        Safety check: no allergy, duplicate therapy or interaction found.
      </p>
    );
  }
  return (
    <div className="safety" role="alert" aria-label="Safety alerts">
      <strong>
        {changed ? "The safety alerts changed since the check: review them again. " : ""}
        {alerts.length === 1 ? "1 safety alert" : `${alerts.length} safety alerts`}: prescribing needs a written reason.
      </strong>
      <ul>
        {alerts.map((a) => (
          <li key={a.code} className={`alert-${a.severity}`}>
            <span className="severity">{a.severity}</span> {a.message}
          </li>
        ))}
      </ul>
    </div>
  );
}

export function Prescribe(props: {
  summary: Summary;
  allergies: AllergyEntry[];
  generation: number;
  onDone: () => Promise<void>;
  /** Records found other alerts at signing: the chart's allergies and prescriptions are read again. */
  onStale: () => Promise<void>;
}): ReactNode {
  const { session, me } = useApp();
  const { summary } = props;
  const patientId = summary.patient.patient_id;
  const action = useAction();
  const medicineProblem = useProblem(action, "medicine_id");
  const [draft, setDraft, discard] = useDraft<RxDraft>(`rx:${patientId}`, emptyRx);
  /** This draft's prescription id: the same for every click and retry, new after signing. */
  const [prescriptionId, setPrescriptionId] = useKept(`rx-id:${patientId}`, newIdempotencyKey);
  const [check, setCheck] = useState<Checked | null>(null);
  const [checkError, setCheckError] = useState("");
  const [retry, setRetry] = useState(0);
  /** The drug whose alerts records found changed when it was signed (said above the new ones). */
  const [changedFor, setChangedFor] = useState("");
  const base = baseOf(draft);
  const identity = base ? JSON.stringify(base) : "";
  const baseRef = useRef(base);
  useLayoutEffect(() => {
    baseRef.current = base;
  });

  const runCheck = useCallback(
    async (key: string, of: Base): Promise<void> => {
      const result = await must(
        session.api.POST("/api/v1/prescriptions/check", {
          body: { patient_id: patientId, medication: forCheck(of) },
        }),
      );
      setCheck({ identity: key, result });
      setCheckError("");
    },
    [session, patientId],
  );

  useEffect(() => {
    // A new drug, or the chart changed (an allergy, a prescription): what was found no longer holds.
    // eslint-disable-next-line react-hooks/set-state-in-effect -- reset with the drug the effect checks
    setCheck(null);
    setCheckError("");
    const of = baseRef.current;
    if (!identity || !of) return;
    let live = true;
    const timer = window.setTimeout(
      () =>
        void runCheck(identity, of).catch((exc: unknown) => {
          if (live) setCheckError(`The safety check could not be made: ${describe(exc)}`);
        }),
      of.free_text ? 400 : 0,
    );
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
  }, [identity, runCheck, props.generation, retry]);

  const search = useCallback(
    async (prefix: string) =>
      (await must(session.api.GET("/api/v1/catalog/medicines", { params: { query: { prefix, limit: 20 } } })))
        .medicines,
    [session],
  );

  if (summary.encounters.length === 0) {
    return (
      <section aria-labelledby="rx-title">
        <h2 id="rx-title">E-prescription</h2>
        <AllergyBanner allergies={props.allergies} />
        <p>Record an encounter first: a prescription belongs to an encounter.</p>
      </section>
    );
  }
  const ready = check !== null && check.identity === identity;
  const alerts = ready ? check.result.alerts : [];
  const blocked = alerts.length > 0 && !draft.override_reason.trim();
  const encounterId = summary.encounters.some((e) => e.encounter_id === draft.encounter_id)
    ? draft.encounter_id
    : summary.encounters[0].encounter_id;
  const bind = bindTo(draft, setDraft, action);

  const sign = async (): Promise<string> => {
    if (!base) throw new Error("Choose a medicine from the catalog (or write a free-text prescription).");
    if (!ready || !check) throw new Error("Wait for the safety check to finish.");
    const codes = check.result.codes;
    const reason = codes.length ? draft.override_reason.trim() : "";
    if (codes.length && !reason) throw new Error("Write why you prescribe despite the safety alerts.");
    const medication: Medication = {
      ...base,
      dose: draft.dose.trim(),
      frequency: draft.frequency.trim(),
      duration_days: Number(draft.duration_days),
      quantity: Number(draft.quantity),
      refills: Number(draft.refills),
      instructions:
        draft.instructions.trim() || (draft.free_text ? "" : (draft.medicine?.details.default_instructions ?? "")),
    };
    // The prescription id is the draft's (not the click's), and one submission is one
    // idempotency key with one signed body: a double click or a retry after a lost reply
    // makes one prescription (shared/submit.ts).
    const what = { prescriptionId, patientId, encounterId, medication, codes, reason };
    const make = async () => {
      const core = {
        prescription_id: prescriptionId,
        patient_id: patientId,
        prescriber_id: me.account_id,
        encounter_id: encounterId,
        created_at: timestamp(new Date()),
        medication,
        alerts: codes,
        override_reason: reason,
      };
      const signature = await signPrescription(session.signingKey(), core);
      return {
        prescription_id: core.prescription_id,
        patient_id: core.patient_id,
        encounter_id: core.encounter_id,
        created_at: core.created_at,
        medication,
        alerts: codes,
        override_reason: reason,
        signature,
      };
    };
    try {
      await submitOnce(`rx:${patientId}`, what, make, (body, key) =>
        must(session.api.POST("/api/v1/prescriptions", { body, headers: idempotent(key) })),
      );
    } catch (exc) {
      const found =
        exc instanceof ApiError && exc.status === 409
          ? (exc.details as { alerts?: unknown } | null)?.alerts
          : undefined;
      if (Array.isArray(found)) {
        // Something changed meanwhile (an allergy, another prescription): read the chart again,
        // which checks this drug again and shows what records found.
        setChangedFor(identity);
        await props.onStale();
        throw new Error(
          "Not signed: the safety alerts changed since the check. Review the alerts below, then sign again.",
          { cause: exc },
        );
      }
      throw exc;
    }
    discard();
    setPrescriptionId(newIdempotencyKey());
    setCheck(null);
    setChangedFor("");
    await props.onDone();
    return `Prescription of ${medication.drug_name} ${medication.strength} signed and sent.`;
  };

  const chosen = draft.medicine;
  return (
    <section aria-labelledby="rx-title">
      <h2 id="rx-title">E-prescription</h2>
      <AllergyBanner allergies={props.allergies} />
      <p className="hint">
        Signed here with your own key (Ed25519 over the canonical prescription); the server stores the signature.
      </p>
      <form
        onChange={() => action.clear()}
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(sign);
        }}
      >
        <Select label="Encounter" {...bind("encounter_id")} value={encounterId}>
          {summary.encounters.map((e) => (
            <option key={e.encounter_id} value={e.encounter_id}>
              {when(e.content.occurred_at)}: {e.content.chief_complaint}
            </option>
          ))}
        </Select>
        <div className="field">
          <label className="inline">
            <input
              type="checkbox"
              name="free_text"
              checked={draft.free_text}
              onChange={(e) => setDraft({ ...draft, free_text: e.target.checked })}
            />{" "}
            Free text (outside the catalog)
          </label>
        </div>
        {!draft.free_text ? (
          <Typeahead<Medicine>
            label="Search the medicine catalog"
            name="catalog_prefix"
            query={draft.query}
            onQuery={(query) => setDraft({ ...draft, query, medicine: null })}
            search={search}
            optionKey={(m) => m.medicine_id}
            optionLabel={(m) => `${m.details.name} ${m.details.strength} ${words(m.details.dosage_form)}`}
            optionHint={(m) =>
              [ingredientsOf(m, " + "), ...(m.classes.length ? [m.classes.join(", ")] : [])].join(" · ")
            }
            onPick={(m) => setDraft({ ...draft, medicine: m, query: `${m.details.name} ${m.details.strength}` })}
            placeholder="name or active ingredient"
            none="No medicine in the catalog starts with this."
            problem={medicineProblem}
          />
        ) : (
          <>
            <Field label="Drug name" required {...bind("drug_name")} />
            <DrugFormFields draft={draft} onChange={setDraft} action={action} example="500 mg" />
          </>
        )}
        {chosen && !draft.free_text && (
          <div className="card wide" role="group" aria-label="Chosen medicine">
            <strong>
              {chosen.details.name} {chosen.details.strength}
            </strong>
            , {words(chosen.details.dosage_form)}, {chosen.details.route}
            <div className="hint">
              Active ingredients: {ingredientsOf(chosen, ", ")}
              {chosen.classes.length > 0 && ` · classes: ${chosen.classes.join(", ")}`}
            </div>
            {chosen.details.default_instructions && <div className="hint">{chosen.details.default_instructions}</div>}
          </div>
        )}
        <Field label="Dose" required {...bind("dose")} />
        <Field label="Frequency" required {...bind("frequency")} />
        <Field label="Days" type="number" min={1} max={365} required {...bind("duration_days")} />
        <Field label="Quantity" type="number" min={1} max={10000} required {...bind("quantity")} />
        <Field label="Refills" type="number" min={0} max={12} required {...bind("refills")} />
        <Field label="Instructions to the patient" {...bind("instructions")} />
        <div className="wide" aria-live="polite">
          {!base && (
            <p className="hint">
              {draft.free_text ? "Give the drug name and strength" : "Choose a medicine"}: it is checked against this
              patient's allergies and current medication before you can sign.
            </p>
          )}
          {base && !ready && !checkError && (
            <p className="busy" role="status">
              Checking allergies, duplicate therapy and interactions…
            </p>
          )}
          {base && checkError && (
            <p className="error" role="alert">
              {checkError}{" "}
              <button type="button" className="secondary" onClick={() => setRetry((n) => n + 1)}>
                Check again
              </button>
            </p>
          )}
          {ready && <SafetyAlerts check={check} changed={changedFor === identity} />}
        </div>
        {alerts.length > 0 && (
          <TextArea
            label="Reason for overriding the alerts"
            required
            maxLength={2000}
            rows={2}
            hint="Signed with the prescription and shown wherever it is read."
            {...bind("override_reason")}
          />
        )}
        <div className="buttons wide">
          <button disabled={action.busy || !ready || blocked} className={alerts.length ? "danger" : undefined}>
            {action.busy ? "Signing…" : alerts.length ? "Override and sign" : "Sign and prescribe"}
          </button>
          {blocked && (
            <span className="hint">Signing is blocked until you write a reason for overriding the alerts.</span>
          )}
        </div>
      </form>
      <Status action={action} />
    </section>
  );
}
