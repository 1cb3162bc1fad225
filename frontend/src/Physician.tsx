// Physicians: today's and the week's calendar (live), the patient chart (demographics,
// encounters with their versions, allergies, active prescriptions), recording encounters,
// and e-prescriptions signed here with the physician's own key. Without a care
// relationship the API answers 403 naming break-glass: the chart offers it.
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { ApiError, call } from "./api";
import { signPrescription, timestamp, type Medication } from "./prescription";
import { DemographicsCard, type Patient as PatientRecord } from "./Reception";
import {
  CLINIC_ZONE_FALLBACK,
  clock,
  dayIn,
  dayLabel,
  fullName,
  learnClinicZone,
  mondayOf,
  searchPatients,
  useApp,
  useLive,
  weekDays,
  when,
  type Appointment,
  type Calendar,
  type PatientBrief,
} from "./shared";
import { Field, field, Loading, numberField, Select, Status, useAction } from "./ui";

const DOSAGE_FORMS = [
  "tablet", "capsule", "oral_solution", "oral_suspension", "syrup", "injection", "infusion", "cream", "ointment",
  "gel", "patch", "inhaler", "drops", "spray", "suppository", "powder", "lozenge",
];
const ROUTES = [
  "oral", "sublingual", "buccal", "topical", "transdermal", "inhalation", "nasal", "ophthalmic", "otic",
  "intravenous", "intramuscular", "subcutaneous", "rectal", "vaginal",
];

interface Medicine {
  medicine_id: string;
  active: boolean;
  details: {
    name: string;
    active_ingredient: string;
    strength: string;
    dosage_form: string;
    route: string;
    type: string;
    default_instructions: string;
  };
}
interface EncounterContent {
  occurred_at: string;
  chief_complaint: string;
  history_of_present_illness: string;
  examination: string;
  assessment: string;
  plan: string;
  diagnoses: { code: string; description: string | null }[];
  vital_signs: Record<string, { value?: number; systolic?: number; diastolic?: number; unit: string } | null> | null;
  allergies: { substance: string; reaction: string | null; severity: string; status: string }[];
}
interface Encounter {
  encounter_id: string;
  version: number;
  physician_id: string;
  recorded_by: string;
  recorded_at: string;
  supersedes: number | null;
  amendment_reason: string | null;
  content: EncounterContent;
}
interface Prescription {
  prescription_id: string;
  encounter_id: string;
  status: string;
  medication: Medication;
  created_at: string;
  prescriber_id: string;
}
interface Patient extends PatientRecord {
  clinical_flags: string[] | null;
}
interface Summary {
  patient: Patient;
  encounters: Encounter[];
  active_prescriptions: Prescription[];
  allergies: { substance: string; severity: string; reaction: string | null }[];
  integrity_failures: string[];
}
interface Verification {
  valid: boolean;
  mac_valid: boolean;
  signature_valid: boolean;
  signer_key_current: boolean | null;
  problems: string[];
}

export function Physician(props: { tab: string; chartFor: string; onOpenChart: (patientId: string) => void }): ReactNode {
  if (props.tab === "Calendar") return <MyCalendar onOpen={props.onOpenChart} />;
  return <Chart initial={props.chartFor} />;
}

function MyCalendar({ onOpen }: { onOpen: (patientId: string) => void }): ReactNode {
  const { session, me } = useApp();
  const action = useAction();
  const [span, setSpan] = useState<"day" | "week">("day");
  const [calendar, setCalendar] = useState<Calendar | null>(null);
  const [names, setNames] = useState<Record<string, string>>({});
  const load = useCallback(async () => {
    const today = dayIn(new Date(), calendar?.time_zone ?? CLINIC_ZONE_FALLBACK);
    const cal = await call<Calendar>(session, "GET", `/api/v1/physicians/${me.account_id}/calendar`, undefined, { day: today, span });
    setCalendar(cal);
    learnClinicZone(cal.time_zone);
    for (const id of [...new Set(cal.appointments.map((a) => a.patient_id))]) {
      try {
        const p = await call<Patient>(session, "GET", `/api/v1/patients/${id}`);
        setNames((n) => ({ ...n, [id]: fullName(p.demographics) }));
      } catch {
        break;
      }
    }
  }, [session, me.account_id, span]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => void action.run(load), [load]); // eslint-disable-line react-hooks/exhaustive-deps
  useLive(["scheduling.appointment."], useCallback(() => void load().catch(() => undefined), [load]));
  const zone = calendar?.time_zone;
  const shown = (calendar?.appointments ?? []).filter((a) => a.status !== "cancelled");
  const row = (a: Appointment): ReactNode => (
    <tr key={a.appointment_id}>
      <td>
        {span === "week" ? when(a.start, zone) : `${clock(a.start, zone)}–${clock(a.end, zone)}`}
      </td>
      <td>{names[a.patient_id] ?? <code>{a.patient_id.slice(0, 8)}</code>}</td>
      <td>{a.reason}</td>
      <td>{a.status}</td>
      <td>
        <button className="secondary" onClick={() => onOpen(a.patient_id)}>
          Open chart
        </button>
      </td>
    </tr>
  );
  return (
    <section aria-labelledby="my-calendar-title">
      <h2 id="my-calendar-title">{span === "day" ? "Today" : "This week"}</h2>
      <div className="buttons" role="group" aria-label="Calendar span">
        <button className={span === "day" ? "" : "secondary"} aria-pressed={span === "day"} onClick={() => setSpan("day")}>
          Today
        </button>
        <button className={span === "week" ? "" : "secondary"} aria-pressed={span === "week"} onClick={() => setSpan("week")}>
          This week
        </button>
        <button className="secondary" onClick={() => void action.run(load)}>
          Refresh
        </button>
      </div>
      <Status action={action} />
      {calendar === null ? (
        <Loading what="your calendar" />
      ) : (
        <>
          {span === "week" && (
            <div className="week" role="grid" aria-label="Week view">
              {weekDays(mondayOf(calendar.first_day)).map((day) => (
                <div key={day} role="gridcell" className={day === dayIn(new Date(), calendar.time_zone) ? "day today" : "day"}>
                  <strong>{dayLabel(day)}</strong>
                  {shown
                    .filter((a) => dayIn(new Date(a.start), calendar.time_zone) === day)
                    .map((a) => (
                      <div key={a.appointment_id} className="appt">
                        {clock(a.start, zone)} {names[a.patient_id] ?? ""}
                        <div className="hint">{a.reason}</div>
                      </div>
                    ))}
                </div>
              ))}
            </div>
          )}
          <div className="scroll">
            <table aria-label="Appointments">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Patient</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Status</th>
                  <th scope="col">Chart</th>
                </tr>
              </thead>
              <tbody>
                {shown.map(row)}
                {shown.length === 0 && (
                  <tr>
                    <td colSpan={5}>No appointments {span === "day" ? "today" : "this week"}.</td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}

function Chart({ initial }: { initial: string }): ReactNode {
  const { session } = useApp();
  const open = useAction();
  const find = useAction();
  const glass = useAction();
  const [patientId, setPatientId] = useState(initial);
  const [summary, setSummary] = useState<Summary | null>(null);
  const [refused, setRefused] = useState<string | null>(null);
  const [found, setFound] = useState<PatientBrief[] | null>(null);

  const load = useCallback(
    async (id: string) => {
      setRefused(null);
      try {
        setSummary(await call<Summary>(session, "GET", `/api/v1/patients/${id}/summary`));
      } catch (exc) {
        setSummary(null);
        if (exc instanceof ApiError && exc.status === 403 && (exc.details as { break_glass?: boolean } | null)?.break_glass) {
          setRefused(id);
        }
        throw exc;
      }
    },
    [session],
  );
  useEffect(() => {
    if (initial) {
      setPatientId(initial);
      void open.run(() => load(initial));
    }
  }, [initial, load]); // eslint-disable-line react-hooks/exhaustive-deps

  const reload = useCallback(() => load(patientId), [load, patientId]);

  return (
    <>
      <section aria-labelledby="chart-find-title">
        <h2 id="chart-find-title">Find a patient</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            void find.run(async () => {
              const patients = await searchPatients(session, {
                family_name: field(form, "chart_family_name"),
                date_of_birth: field(form, "chart_date_of_birth"),
                mrn: field(form, "chart_mrn"),
              });
              setFound(patients);
              return patients.length ? "" : "No patient matches exactly.";
            });
          }}
        >
          <Field label="Family name" name="chart_family_name" action={find} autoComplete="off" />
          <Field label="Date of birth" name="chart_date_of_birth" type="date" action={find} />
          <Field label="or record number" name="chart_mrn" action={find} placeholder="MH-…" autoComplete="off" />
          <button disabled={find.busy}>Search</button>
        </form>
        <Status action={find} />
        {found && found.length > 0 && (
          <ul className="plain">
            {found.map((p) => (
              <li key={p.patient_id}>
                {fullName(p)}, born {p.date_of_birth} ({p.mrn}){" "}
                <button
                  className="secondary"
                  onClick={() => {
                    setPatientId(p.patient_id);
                    void open.run(() => load(p.patient_id));
                  }}
                >
                  Open chart
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <Status action={open} busyText="Opening the chart…" />
      {refused && (
        <section className="warning" aria-labelledby="bg-title">
          <h2 id="bg-title">Emergency access (break-glass)</h2>
          <p>
            You have no care relationship with this patient. In an emergency you may open the chart anyway: the access is
            time-limited, audited as emergency treatment and reported to the administrators.
          </p>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              const reason = field(e.currentTarget, "emergency_reason");
              const id = refused;
              void glass.run(async () => {
                const grant = await call<{ expires_at: string }>(session, "POST", `/api/v1/patients/${id}/break-glass`, { reason });
                await load(id);
                return `Emergency access open until ${when(grant.expires_at)}; it is reported to the administrators.`;
              });
            }}
          >
            <Field label="Reason for emergency access" name="emergency_reason" required minLength={5} action={glass} />
            <button className="danger" disabled={glass.busy}>
              Break the glass and open the chart
            </button>
          </form>
        </section>
      )}
      <Status action={glass} />
      {summary && (
        <>
          <ChartView summary={summary} onChanged={reload} />
          <RecordEncounter patientId={summary.patient.patient_id} onDone={reload} />
          <Prescribe summary={summary} onDone={reload} />
        </>
      )}
    </>
  );
}

function vitalsText(v: EncounterContent["vital_signs"]): string {
  if (!v) return "";
  const parts: string[] = [];
  if (v.blood_pressure) parts.push(`BP ${v.blood_pressure.systolic}/${v.blood_pressure.diastolic} mmHg`);
  if (v.heart_rate) parts.push(`HR ${v.heart_rate.value}/min`);
  if (v.temperature) parts.push(`T ${v.temperature.value} ${v.temperature.unit === "Cel" ? "°C" : "°F"}`);
  if (v.respiratory_rate) parts.push(`RR ${v.respiratory_rate.value}/min`);
  if (v.oxygen_saturation) parts.push(`SpO₂ ${v.oxygen_saturation.value}%`);
  if (v.weight) parts.push(`${v.weight.value} ${v.weight.unit === "kg" ? "kg" : "lb"}`);
  if (v.height) parts.push(`${v.height.value} ${v.height.unit === "cm" ? "cm" : "in"}`);
  return parts.join(" · ");
}

function ChartView({ summary, onChanged }: { summary: Summary; onChanged: () => Promise<void> }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const [versions, setVersions] = useState<Record<string, Encounter[]>>({});
  const [verified, setVerified] = useState<Record<string, Verification>>({});
  const [cancelling, setCancelling] = useState<string | null>(null);
  const p = summary.patient;
  return (
    <section aria-label="Chart">
      <h2 id="chart-title">
        {fullName(p.demographics)} <small>({p.mrn})</small>
      </h2>
      <DemographicsCard patient={p} titled={false} />
      {p.clinical_flags && p.clinical_flags.length > 0 && (
        <p className="warn">Alerts: {p.clinical_flags.map((f) => f.replace(/_/g, " ")).join(", ")}</p>
      )}
      <h3>Allergies</h3>
      <p aria-label="Allergies">
        {summary.allergies.length
          ? summary.allergies.map((a) => `${a.substance} (${a.severity}${a.reaction ? `, ${a.reaction}` : ""})`).join("; ")
          : "None recorded."}
      </p>
      {summary.integrity_failures.length > 0 && (
        <p className="error" role="alert">
          {summary.integrity_failures.length} prescription(s) failed their integrity check and are not shown.
        </p>
      )}
      <h3>Active prescriptions</h3>
      <Status action={action} />
      {summary.active_prescriptions.length === 0 && <p>None.</p>}
      <ul className="plain" aria-label="Active prescriptions">
        {summary.active_prescriptions.map((rx) => {
          const m = rx.medication;
          const v = verified[rx.prescription_id];
          return (
            <li key={rx.prescription_id} className="card">
              <strong>
                {m.drug_name} {m.strength}
              </strong>{" "}
              ({m.dosage_form.replace(/_/g, " ")}, {m.route}): {m.dose}, {m.frequency}, {m.duration_days} days, quantity {m.quantity},{" "}
              {m.refills} refills{m.free_text ? " · free text (outside the catalog)" : ""}
              {m.instructions && <div className="hint">{m.instructions}</div>}
              <div className="hint">Signed {when(rx.created_at)}</div>
              <div className="buttons">
                <button
                  className="secondary"
                  onClick={() =>
                    void action.run(async () => {
                      const result = await call<Verification>(session, "GET", `/api/v1/prescriptions/${rx.prescription_id}/verify`);
                      setVerified((all) => ({ ...all, [rx.prescription_id]: result }));
                    })
                  }
                >
                  Verify signature
                </button>
                <button className="secondary" onClick={() => setCancelling(rx.prescription_id)}>
                  Cancel prescription
                </button>
              </div>
              {v && (
                <p className={v.valid ? "ok" : "error"} role="status" data-testid="verification">
                  {v.valid
                    ? `Signature verified: the prescriber's Ed25519 signature and the record's integrity MAC are valid${v.signer_key_current === false ? " (signed with an earlier key of the prescriber)" : ""}.`
                    : `Not valid: ${v.problems.join("; ")}`}
                </p>
              )}
              {cancelling === rx.prescription_id && (
                <form
                  onSubmit={(e) => {
                    e.preventDefault();
                    const reason = field(e.currentTarget, "rx_cancel_reason");
                    void action.run(async () => {
                      await call(session, "POST", `/api/v1/prescriptions/${rx.prescription_id}/cancel`, { reason });
                      setCancelling(null);
                      await onChanged();
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
        })}
      </ul>
      <h3>Encounters</h3>
      {summary.encounters.length === 0 && <p>No encounter recorded yet.</p>}
      <ul className="plain" aria-label="Encounters">
        {summary.encounters.map((e) => (
          <li key={e.encounter_id} className="card">
            <strong>{when(e.content.occurred_at)}</strong>: {e.content.chief_complaint}{" "}
            <span className="hint">(version {e.version})</span>
            {e.content.diagnoses.length > 0 && (
              <div>Diagnoses: {e.content.diagnoses.map((d) => `${d.code}${d.description ? ` ${d.description}` : ""}`).join(", ")}</div>
            )}
            {e.content.vital_signs && <div>Vital signs: {vitalsText(e.content.vital_signs)}</div>}
            {e.content.assessment && <div>Assessment: {e.content.assessment}</div>}
            {e.content.plan && <div>Plan: {e.content.plan}</div>}
            <button
              className="link"
              onClick={() =>
                void action.run(async () => {
                  if (versions[e.encounter_id]) {
                    setVersions(({ [e.encounter_id]: _, ...rest }) => rest);
                    return;
                  }
                  const history = await call<{ versions: Encounter[] }>(session, "GET", `/api/v1/encounters/${e.encounter_id}`, undefined, {
                    include_versions: true,
                  });
                  setVersions((all) => ({ ...all, [e.encounter_id]: history.versions }));
                })
              }
            >
              {versions[e.encounter_id] ? "Hide versions" : "Show versions"}
            </button>
            {versions[e.encounter_id] && (
              <ol aria-label="Versions">
                {versions[e.encounter_id].map((v) => (
                  <li key={v.version}>
                    Version {v.version}, recorded {when(v.recorded_at)}
                    {v.amendment_reason ? ` (amended: ${v.amendment_reason})` : ""}: {v.content.chief_complaint}
                  </li>
                ))}
              </ol>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

function RecordEncounter({ patientId, onDone }: { patientId: string; onDone: () => Promise<void> }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  return (
    <section aria-labelledby="encounter-title">
      <h2 id="encounter-title">Record an encounter</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          void action.run(async () => {
            const vital: Record<string, unknown> = {};
            const n = (name: string): number | undefined => numberField(form, name);
            if (n("systolic") !== undefined || n("diastolic") !== undefined)
              vital.blood_pressure = { systolic: n("systolic"), diastolic: n("diastolic") };
            if (n("heart_rate") !== undefined) vital.heart_rate = { value: n("heart_rate") };
            if (n("temperature") !== undefined) vital.temperature = { value: n("temperature"), unit: "Cel" };
            if (n("respiratory_rate") !== undefined) vital.respiratory_rate = { value: n("respiratory_rate") };
            if (n("oxygen_saturation") !== undefined) vital.oxygen_saturation = { value: n("oxygen_saturation") };
            if (n("weight") !== undefined) vital.weight = { value: n("weight"), unit: "kg" };
            if (n("height") !== undefined) vital.height = { value: n("height"), unit: "cm" };
            const diagnoses = field(form, "diagnoses")
              .split(/[,;\n]/)
              .map((c) => c.trim())
              .filter(Boolean)
              .map((entry) => {
                const [code, ...rest] = entry.split(/\s+/);
                return rest.length ? { code, description: rest.join(" ") } : { code };
              });
            const allergy = field(form, "allergy");
            await call(session, "POST", `/api/v1/patients/${patientId}/encounters`, {
              content: {
                occurred_at: new Date().toISOString(),
                chief_complaint: field(form, "chief_complaint"),
                history_of_present_illness: field(form, "history_of_present_illness"),
                examination: field(form, "examination"),
                assessment: field(form, "assessment"),
                plan: field(form, "plan"),
                diagnoses,
                vital_signs: Object.keys(vital).length ? vital : null,
                allergies: allergy ? [{ substance: allergy, severity: field(form, "allergy_severity") }] : [],
              },
            });
            form.reset();
            await onDone();
            return "Encounter recorded.";
          });
        }}
      >
        <Field label="Chief complaint" name="chief_complaint" required maxLength={500} action={action} />
        <Field label="History of present illness" name="history_of_present_illness" action={action} />
        <Field label="Examination" name="examination" action={action} />
        <Field label="Assessment" name="assessment" action={action} />
        <Field label="Plan" name="plan" action={action} />
        <Field
          label="Diagnoses (ICD-10, comma-separated)"
          name="diagnoses"
          placeholder="J45.909 Asthma, I10"
          action={action}
          hint="A code, optionally followed by a description"
        />
        <fieldset className="vitals">
          <legend>Vital signs</legend>
          <Field label="Systolic (mmHg)" name="systolic" type="number" min={40} max={300} action={action} />
          <Field label="Diastolic (mmHg)" name="diastolic" type="number" min={20} max={200} action={action} />
          <Field label="Heart rate (/min)" name="heart_rate" type="number" min={20} max={300} action={action} />
          <Field label="Temperature (°C)" name="temperature" type="number" step="0.1" min={25} max={45} action={action} />
          <Field label="Respiratory rate (/min)" name="respiratory_rate" type="number" min={4} max={80} action={action} />
          <Field label="SpO₂ (%)" name="oxygen_saturation" type="number" min={50} max={100} action={action} />
          <Field label="Weight (kg)" name="weight" type="number" step="0.1" action={action} />
          <Field label="Height (cm)" name="height" type="number" step="0.1" action={action} />
        </fieldset>
        <Field label="New allergy (substance)" name="allergy" action={action} />
        <Select label="Allergy severity" name="allergy_severity" defaultValue="unknown">
          <option value="mild">mild</option>
          <option value="moderate">moderate</option>
          <option value="severe">severe</option>
          <option value="unknown">unknown</option>
        </Select>
        <button disabled={action.busy}>{action.busy ? "Recording…" : "Record encounter"}</button>
      </form>
      <Status action={action} />
    </section>
  );
}

function Prescribe({ summary, onDone }: { summary: Summary; onDone: () => Promise<void> }): ReactNode {
  const { session, me } = useApp();
  const action = useAction();
  const search = useAction();
  const [freeText, setFreeText] = useState(false);
  const [medicines, setMedicines] = useState<Medicine[]>([]);
  const [chosen, setChosen] = useState<Medicine | null>(null);
  const [prefix, setPrefix] = useState("");

  useEffect(() => {
    if (freeText || prefix.trim().length < 2) {
      setMedicines([]);
      return;
    }
    const timer = window.setTimeout(() => {
      void search.run(async () => {
        const r = await call<{ medicines: Medicine[] }>(session, "GET", "/api/v1/catalog/medicines", undefined, { prefix: prefix.trim(), limit: 20 });
        setMedicines(r.medicines);
        return r.medicines.length ? "" : "No medicine in the catalog starts with this.";
      });
    }, 250);
    return () => window.clearTimeout(timer);
  }, [prefix, freeText, session]); // eslint-disable-line react-hooks/exhaustive-deps

  if (summary.encounters.length === 0) {
    return (
      <section aria-labelledby="rx-title">
        <h2 id="rx-title">E-prescription</h2>
        <p>Record an encounter first: a prescription belongs to an encounter.</p>
      </section>
    );
  }
  return (
    <section aria-labelledby="rx-title">
      <h2 id="rx-title">E-prescription</h2>
      <p className="hint">Signed here with your own key (Ed25519 over the canonical prescription); the server stores the signature.</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          void action.run(async () => {
            let base: Pick<Medication, "drug_name" | "strength" | "dosage_form" | "route" | "medicine_id" | "free_text">;
            let defaultInstructions = "";
            if (freeText) {
              base = {
                drug_name: field(form, "drug_name"),
                strength: field(form, "strength"),
                dosage_form: field(form, "dosage_form"),
                route: field(form, "route"),
                medicine_id: "",
                free_text: true,
              };
            } else {
              if (!chosen) throw new Error("Choose a medicine from the catalog (or write a free-text prescription).");
              base = {
                drug_name: chosen.details.name,
                strength: chosen.details.strength,
                dosage_form: chosen.details.dosage_form,
                route: chosen.details.route,
                medicine_id: chosen.medicine_id,
                free_text: false,
              };
              defaultInstructions = chosen.details.default_instructions;
            }
            const medication: Medication = {
              ...base,
              dose: field(form, "dose"),
              frequency: field(form, "frequency"),
              duration_days: Number(field(form, "duration_days")),
              quantity: Number(field(form, "quantity")),
              refills: Number(field(form, "refills")),
              instructions: field(form, "instructions") || defaultInstructions,
            };
            const core = {
              prescription_id: crypto.randomUUID(),
              patient_id: summary.patient.patient_id,
              prescriber_id: me.account_id,
              encounter_id: field(form, "encounter_id"),
              created_at: timestamp(new Date()),
              medication,
            };
            const signature = await signPrescription(session.signingKey(), core);
            await call(session, "POST", "/api/v1/prescriptions", {
              prescription_id: core.prescription_id,
              patient_id: core.patient_id,
              encounter_id: core.encounter_id,
              created_at: core.created_at,
              medication,
              signature,
            });
            form.reset();
            setFreeText(false);
            setChosen(null);
            setPrefix("");
            await onDone();
            return `Prescription of ${medication.drug_name} ${medication.strength} signed and sent.`;
          });
        }}
      >
        <Select label="Encounter" name="encounter_id" action={action} defaultValue={summary.encounters[0].encounter_id}>
          {summary.encounters.map((e) => (
            <option key={e.encounter_id} value={e.encounter_id}>
              {when(e.content.occurred_at)}: {e.content.chief_complaint}
            </option>
          ))}
        </Select>
        <div className="field">
          <label className="inline">
            <input type="checkbox" name="free_text" checked={freeText} onChange={(e) => setFreeText(e.target.checked)} /> Free text
            (outside the catalog)
          </label>
        </div>
        {!freeText ? (
          <>
            <Field
              label="Search the medicine catalog"
              name="catalog_prefix"
              value={prefix}
              onChange={(e) => setPrefix(e.target.value)}
              placeholder="name or active ingredient"
              autoComplete="off"
            />
            <Select
              label="Medicine"
              name="medicine"
              value={chosen?.medicine_id ?? ""}
              onChange={(e) => setChosen(medicines.find((m) => m.medicine_id === e.target.value) ?? null)}
              action={action}
            >
              <option value="">{medicines.length ? "Choose…" : "Search first"}</option>
              {medicines.map((m) => (
                <option key={m.medicine_id} value={m.medicine_id}>
                  {m.details.name} {m.details.strength} {m.details.dosage_form.replace(/_/g, " ")} ({m.details.active_ingredient})
                </option>
              ))}
            </Select>
          </>
        ) : (
          <>
            <Field label="Drug name" name="drug_name" required action={action} />
            <Field label="Strength" name="strength" required placeholder="500 mg" action={action} />
            <Select label="Dosage form" name="dosage_form" defaultValue="tablet" action={action}>
              {DOSAGE_FORMS.map((f) => (
                <option key={f} value={f}>
                  {f.replace(/_/g, " ")}
                </option>
              ))}
            </Select>
            <Select label="Route" name="route" defaultValue="oral" action={action}>
              {ROUTES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </Select>
          </>
        )}
        <Field label="Dose" name="dose" required defaultValue="1 tablet" action={action} />
        <Field label="Frequency" name="frequency" required defaultValue="twice daily" action={action} />
        <Field label="Days" name="duration_days" type="number" min={1} max={365} defaultValue={7} required action={action} />
        <Field label="Quantity" name="quantity" type="number" min={1} max={10000} defaultValue={14} required action={action} />
        <Field label="Refills" name="refills" type="number" min={0} max={12} defaultValue={0} required action={action} />
        <Field label="Instructions to the patient" name="instructions" action={action} />
        <button disabled={action.busy}>{action.busy ? "Signing…" : "Sign and prescribe"}</button>
      </form>
      <Status action={search} />
      <Status action={action} />
      {chosen && !freeText && (
        <p className="hint">
          {chosen.details.name} {chosen.details.strength}, {chosen.details.dosage_form.replace(/_/g, " ")}, {chosen.details.route}
          {chosen.details.default_instructions ? `: ${chosen.details.default_instructions}` : ""}
        </p>
      )}
    </section>
  );
}
