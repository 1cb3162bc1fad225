// Encounters in the chart: the whole note (history of present illness and examination
// included), recording a new one, amending one with a reason, and every version (who,
// when, why), each one's content viewable.
import { useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import { useApp } from "../shared/context";
import { useDraft, useKept } from "../shared/drafts";
import { when } from "../shared/time";
import { Status, Terms, TextArea, useAction } from "../shared/ui";
import { contentOf, draftOf, emptyEncounter, EncounterFields, type EncounterDraft } from "./EncounterForm";
import type { Encounter, EncounterContent } from "./types";
import { idempotent, submitOnce, writeOnce } from "../shared/submit";

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

/** Everything an encounter version says. */
export function EncounterNote({ content }: { content: EncounterContent }): ReactNode {
  const rows: [string, ReactNode][] = [
    ["Chief complaint", content.chief_complaint],
    ["History of present illness", content.history_of_present_illness],
    ["Examination", content.examination],
    [
      "Diagnoses",
      content.diagnoses.length
        ? content.diagnoses.map((d) => `${d.code}${d.description ? ` ${d.description}` : ""}`).join("; ")
        : "",
    ],
    ["Vital signs", vitalsText(content.vital_signs)],
    ["Assessment", content.assessment],
    ["Plan", content.plan],
    [
      "Allergies noted",
      content.allergies
        .map((a) => `${a.substance} (${a.severity}${a.reaction ? `, ${a.reaction}` : ""}; ${a.status})`)
        .join("; "),
    ],
  ];
  return <Terms className="note" rows={rows} />;
}

export function EncounterList(props: {
  patientId: string;
  encounters: Encounter[];
  name: (accountId: string) => string;
  onChanged: () => Promise<void>;
}): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const [versions, setVersions] = useState<Record<string, Encounter[]>>({});
  const [viewing, setViewing] = useState<string | null>(null);
  const [amending, setAmending] = useKept<string | null>(`amending:${props.patientId}`, () => null);

  const loadVersions = async (encounterId: string): Promise<void> => {
    const history = await must(
      session.api.GET("/api/v1/encounters/{encounter_id}", {
        params: { path: { encounter_id: encounterId }, query: { include_versions: true } },
      }),
    );
    setVersions((all) => ({ ...all, [encounterId]: history.versions }));
  };

  return (
    <>
      <h3>Encounters</h3>
      <Status action={action} />
      {props.encounters.length === 0 && <p>No encounter recorded yet.</p>}
      <ul className="plain" aria-label="Encounters">
        {props.encounters.map((e) => {
          const shown = versions[e.encounter_id];
          return (
            <li key={e.encounter_id} className="card" aria-label={`Encounter of ${when(e.content.occurred_at)}`}>
              <strong>{when(e.content.occurred_at)}</strong>: {e.content.chief_complaint}{" "}
              <span className="hint">
                (version {e.version}
                {e.version > 1 ? `, amended by ${props.name(e.recorded_by)}` : `, by ${props.name(e.recorded_by)}`})
              </span>
              <EncounterNote content={e.content} />
              <div className="buttons">
                <button
                  className="link"
                  onClick={() =>
                    void action.run(async () => {
                      if (shown) {
                        setVersions(({ [e.encounter_id]: _, ...rest }) => rest);
                        return;
                      }
                      await loadVersions(e.encounter_id);
                    })
                  }
                >
                  {shown ? "Hide versions" : "Show versions"}
                </button>
                {amending !== e.encounter_id && (
                  <button className="secondary" onClick={() => setAmending(e.encounter_id)}>
                    Amend
                  </button>
                )}
              </div>
              {amending === e.encounter_id && (
                <Amend
                  encounter={e}
                  onClose={() => setAmending(null)}
                  onDone={async () => {
                    setAmending(null);
                    await props.onChanged();
                    await loadVersions(e.encounter_id);
                  }}
                />
              )}
              {shown && (
                <ol aria-label="Versions" className="versions">
                  {shown.map((v) => {
                    const key = `${v.encounter_id}:${v.version}`;
                    return (
                      <li key={v.version}>
                        Version {v.version}, recorded {when(v.recorded_at)} by {props.name(v.recorded_by)}
                        {v.amendment_reason
                          ? ` (amended: ${v.amendment_reason})`
                          : v.version === 1
                            ? " (first recorded)"
                            : ""}{" "}
                        <button className="link" onClick={() => setViewing(viewing === key ? null : key)}>
                          {viewing === key ? `Hide version ${v.version}` : `View version ${v.version}`}
                        </button>
                        {viewing === key && (
                          <div className="card" role="region" aria-label={`Version ${v.version}`}>
                            <EncounterNote content={v.content} />
                          </div>
                        )}
                      </li>
                    );
                  })}
                </ol>
              )}
            </li>
          );
        })}
      </ul>
    </>
  );
}

interface AmendDraft {
  fields: EncounterDraft;
  reason: string;
}

function Amend(props: { encounter: Encounter; onClose: () => void; onDone: () => Promise<void> }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const e = props.encounter;
  const [draft, setDraft, discard] = useDraft<AmendDraft>(`amend:${e.encounter_id}:${e.version}`, () => ({
    fields: draftOf(e.content),
    reason: "",
  }));
  return (
    <section className="nested" aria-label="Amend the encounter">
      <h4>Amend this encounter (version {e.version})</h4>
      <p className="hint">
        The current version is kept; the amendment becomes version {e.version + 1}, with your reason.
      </p>
      <form
        onChange={() => action.clear()}
        onSubmit={(ev) => {
          ev.preventDefault();
          void action.run(async () => {
            if (!draft.reason.trim()) throw new Error("Give the reason for the amendment.");
            await writeOnce(
              "/api/v1/encounters/{encounter_id}/amend",
              {
                params: { path: { encounter_id: e.encounter_id } },
                body: {
                  expected_version: e.version,
                  reason: draft.reason.trim(),
                  content: contentOf(draft.fields, e.content.occurred_at, e.content.allergies, e.content.vital_signs),
                },
              },
              (o) => must(session.api.POST("/api/v1/encounters/{encounter_id}/amend", o)),
            );
            discard();
            await props.onDone();
          });
        }}
      >
        <EncounterFields draft={draft.fields} onChange={(fields) => setDraft({ ...draft, fields })} action={action} />
        <TextArea
          label="Reason for the amendment"
          name="reason"
          required
          maxLength={1000}
          rows={2}
          action={action}
          value={draft.reason}
          onChange={(ev) => setDraft({ ...draft, reason: ev.target.value })}
        />
        <div className="buttons wide">
          <button disabled={action.busy || !draft.reason.trim()}>{action.busy ? "Saving…" : "Save amendment"}</button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              discard();
              props.onClose();
            }}
          >
            Discard changes
          </button>
        </div>
      </form>
      <Status action={action} />
    </section>
  );
}

export function RecordEncounter({ patientId, onDone }: { patientId: string; onDone: () => Promise<void> }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const [draft, setDraft, discard] = useDraft<EncounterDraft>(`encounter:${patientId}`, emptyEncounter);
  return (
    <section aria-labelledby="encounter-title">
      <h2 id="encounter-title">Record an encounter</h2>
      <form
        onChange={() => action.clear()}
        onSubmit={(ev) => {
          ev.preventDefault();
          void action.run(async () => {
            // One submission, one key: a double submit or a retry records one encounter.
            await submitOnce(
              `encounter:${patientId}`,
              draft,
              () => ({ content: contentOf(draft, new Date().toISOString(), []) }),
              (body, key) =>
                must(
                  session.api.POST("/api/v1/patients/{patient_id}/encounters", {
                    params: { path: { patient_id: patientId } },
                    body,
                    headers: idempotent(key),
                  }),
                ),
            );
            discard();
            await onDone();
            return "Encounter recorded.";
          });
        }}
      >
        <EncounterFields draft={draft} onChange={setDraft} action={action} />
        <p className="hint wide">Allergies go on the patient's allergy list (above), where they are kept up to date.</p>
        <div className="buttons wide">
          <button disabled={action.busy}>{action.busy ? "Recording…" : "Record encounter"}</button>
        </div>
      </form>
      <Status action={action} />
    </section>
  );
}
