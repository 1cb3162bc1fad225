// The note of an encounter as a form, for recording one and for amending one: multi-line
// note fields, ICD-10 diagnoses, vital signs. Its values live in a draft (drafts.ts), so a
// lock never loses them.
import type { ReactNode } from "react";

import { type Action, Field, TextArea, useProblem } from "../shared/ui";
import { DiagnosisPicker } from "./DiagnosisPicker";
import type { Diagnosis, EncounterContent, Quantity } from "./types";

interface Vital {
  name: string;
  label: string;
  min?: number;
  max?: number;
  step?: string;
}

export const VITALS: Vital[] = [
  { name: "systolic", label: "Systolic (mmHg)", min: 40, max: 300 },
  { name: "diastolic", label: "Diastolic (mmHg)", min: 20, max: 200 },
  { name: "heart_rate", label: "Heart rate (/min)", min: 20, max: 300 },
  { name: "temperature", label: "Temperature (°C)", min: 25, max: 45, step: "0.1" },
  { name: "respiratory_rate", label: "Respiratory rate (/min)", min: 4, max: 80 },
  { name: "oxygen_saturation", label: "SpO₂ (%)", min: 50, max: 100 },
  { name: "weight", label: "Weight (kg)", step: "0.1" },
  { name: "height", label: "Height (cm)", step: "0.1" },
];

export interface EncounterDraft {
  chief_complaint: string;
  history_of_present_illness: string;
  examination: string;
  assessment: string;
  plan: string;
  diagnoses: Diagnosis[];
  vitals: Record<string, string>;
}

export function emptyEncounter(): EncounterDraft {
  return {
    chief_complaint: "",
    history_of_present_illness: "",
    examination: "",
    assessment: "",
    plan: "",
    diagnoses: [],
    vitals: {},
  };
}

function text(n: number | undefined): string {
  return n === undefined || n === null ? "" : String(n);
}

/** A version's content as the form shows it (to amend it). */
export function draftOf(content: EncounterContent): EncounterDraft {
  const v = content.vital_signs ?? {};
  const value = (name: keyof typeof v): string => text((v[name] as Quantity | null | undefined)?.value);
  return {
    chief_complaint: content.chief_complaint,
    history_of_present_illness: content.history_of_present_illness,
    examination: content.examination,
    assessment: content.assessment,
    plan: content.plan,
    diagnoses: content.diagnoses.map((d) => ({ code: d.code, description: d.description ?? null })),
    vitals: {
      systolic: text(v.blood_pressure?.systolic),
      diastolic: text(v.blood_pressure?.diastolic),
      heart_rate: value("heart_rate"),
      temperature: v.temperature?.unit === "Cel" ? value("temperature") : "",
      respiratory_rate: value("respiratory_rate"),
      oxygen_saturation: value("oxygen_saturation"),
      weight: v.weight?.unit === "kg" ? value("weight") : "",
      height: v.height?.unit === "cm" ? value("height") : "",
    },
  };
}

/** The vital signs of a draft as the API takes them (null when none was given). Units
 * other than those the form offers (°F, lb, in) are kept from `previous` untouched. */
export function vitalSigns(
  draft: EncounterDraft,
  previous?: EncounterContent["vital_signs"],
): EncounterContent["vital_signs"] {
  const n = (name: string): number | undefined => {
    const raw = (draft.vitals[name] ?? "").trim();
    return raw === "" ? undefined : Number(raw);
  };
  const vital: Record<string, Quantity> = {};
  for (const [name, quantity] of Object.entries(previous ?? {})) {
    const foreign =
      (name === "temperature" && quantity?.unit !== "Cel") ||
      (name === "weight" && quantity?.unit !== "kg") ||
      (name === "height" && quantity?.unit !== "cm");
    if (quantity && foreign) vital[name] = quantity;
  }
  const systolic = n("systolic");
  const diastolic = n("diastolic");
  if (systolic !== undefined || diastolic !== undefined) vital.blood_pressure = { systolic, diastolic, unit: "mmHg" };
  const simple: [string, string][] = [
    ["heart_rate", "/min"],
    ["respiratory_rate", "/min"],
    ["oxygen_saturation", "%"],
  ];
  for (const [name, unit] of simple) {
    const value = n(name);
    if (value !== undefined) vital[name] = { value, unit };
  }
  const metric: [string, string][] = [
    ["temperature", "Cel"],
    ["weight", "kg"],
    ["height", "cm"],
  ];
  for (const [name, unit] of metric) {
    const value = n(name);
    if (value !== undefined) vital[name] = { value, unit };
  }
  return Object.keys(vital).length ? vital : null;
}

/** The draft as encounter content (the time and the allergies noted come from the caller). */
export function contentOf(
  draft: EncounterDraft,
  occurredAt: string,
  allergies: EncounterContent["allergies"],
  previousVitals?: EncounterContent["vital_signs"],
): EncounterContent {
  return {
    occurred_at: occurredAt,
    chief_complaint: draft.chief_complaint.trim(),
    history_of_present_illness: draft.history_of_present_illness.trim(),
    examination: draft.examination.trim(),
    assessment: draft.assessment.trim(),
    plan: draft.plan.trim(),
    diagnoses: draft.diagnoses,
    vital_signs: vitalSigns(draft, previousVitals),
    allergies,
  };
}

type NoteField = "history_of_present_illness" | "examination" | "assessment" | "plan";
const NOTES: [NoteField, string][] = [
  ["history_of_present_illness", "History of present illness"],
  ["examination", "Examination"],
  ["assessment", "Assessment"],
  ["plan", "Plan"],
];

/** The fields, bound to `draft`; `onChange` gets the whole new draft. */
export function EncounterFields(props: {
  draft: EncounterDraft;
  onChange: (draft: EncounterDraft) => void;
  action: Action;
}): ReactNode {
  const { draft, onChange, action } = props;
  const set = <K extends keyof EncounterDraft>(name: K, value: EncounterDraft[K]): void =>
    onChange({ ...draft, [name]: value });
  const diagnosisProblem = [
    useProblem(action, "diagnoses"),
    useProblem(action, "code"),
    useProblem(action, "description"),
  ]
    .filter(Boolean)
    .join(" ");
  return (
    <>
      <Field
        label="Chief complaint"
        name="chief_complaint"
        required
        maxLength={500}
        action={action}
        value={draft.chief_complaint}
        onChange={(e) => set("chief_complaint", e.target.value)}
      />
      {NOTES.map(([name, label]) => (
        <TextArea
          key={name}
          label={label}
          name={name}
          maxLength={10_000}
          action={action}
          value={draft[name]}
          onChange={(e) => set(name, e.target.value)}
        />
      ))}
      <DiagnosisPicker diagnoses={draft.diagnoses} onChange={(d) => set("diagnoses", d)} problem={diagnosisProblem} />
      <fieldset className="vitals">
        <legend>Vital signs</legend>
        {VITALS.map((v) => (
          <Field
            key={v.name}
            label={v.label}
            name={v.name}
            type="number"
            min={v.min}
            max={v.max}
            step={v.step}
            action={action}
            value={draft.vitals[v.name] ?? ""}
            onChange={(e) => set("vitals", { ...draft.vitals, [v.name]: e.target.value })}
          />
        ))}
      </fieldset>
    </>
  );
}
