// The patient's allergy list: a banner on top of the chart and of the prescribing form,
// and a panel to add an allergy (a substance or class of the drug vocabulary, or free
// text), change its severity or reaction, or mark it resolved or refuted, with who and when.
import { useCallback, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import { useApp } from "../shared/context";
import { useDraft } from "../shared/drafts";
import { when } from "../shared/time";
import { Field, Select, Status, useAction, useProblem } from "../shared/ui";
import type { Allergy, AllergyEntry, AllergyList, AllergySeverity, AllergyStatus, Substance } from "./types";
import { Typeahead } from "./Typeahead";
import { writeOnce } from "../shared/submit";

const SEVERITIES: AllergySeverity[] = ["severe", "moderate", "mild", "unknown"];
const RANK: Record<AllergySeverity, number> = { severe: 0, moderate: 1, mild: 2, unknown: 3 };

export function allergyText(a: Pick<Allergy, "substance" | "severity" | "reaction">): string {
  return `${a.substance} (${a.severity}${a.reaction ? `, ${a.reaction}` : ""})`;
}

/** Active allergies, the most severe first, or a plain statement that none is recorded. */
export function AllergyBanner({ allergies }: { allergies: AllergyEntry[] }): ReactNode {
  const active = allergies.filter((a) => a.status === "active").sort((a, b) => RANK[a.severity] - RANK[b.severity]);
  return (
    <div className={active.length ? "allergy-banner" : "allergy-banner none"} role="note" aria-label="Allergy banner">
      <strong>Allergies:</strong>{" "}
      {active.length === 0
        ? "No known allergies recorded."
        : active.map((a, i) => (
            <span key={a.allergy_id} className={`allergy ${a.severity}`}>
              {i > 0 && " · "}
              {allergyText(a)}
            </span>
          ))}
    </div>
  );
}

interface NewAllergy {
  query: string;
  code: string | null;
  severity: AllergySeverity;
  reaction: string;
}

const emptyAllergy = (): NewAllergy => ({ query: "", code: null, severity: "unknown", reaction: "" });

interface Editing {
  allergy_id: string;
  severity: AllergySeverity;
  reaction: string;
}

export function AllergyPanel(props: {
  patientId: string;
  list: AllergyList | null;
  name: (accountId: string) => string;
  onChanged: () => Promise<void>;
}): ReactNode {
  const { session } = useApp();
  const add = useAction();
  const substanceProblem = useProblem(add, "substance");
  const codeProblem = useProblem(add, "code");
  const change = useAction();
  const [draft, setDraft, discard] = useDraft<NewAllergy>(`allergy:${props.patientId}`, emptyAllergy);
  const [editing, setEditing, stopEditing] = useDraft<Editing | null>(`allergy-edit:${props.patientId}`, () => null);
  const [notice, setNotice] = useState("");
  const search = useCallback(
    async (prefix: string) => {
      const found = await must(
        session.api.GET("/api/v1/catalog/substances", { params: { query: { prefix, limit: 12 } } }),
      );
      setNotice(found.notice);
      return found.substances;
    },
    [session],
  );
  const entries = props.list?.allergies ?? [];

  const put = (entry: AllergyEntry, allergy: Allergy, done: string, saved?: () => void): void =>
    void change.run(async () => {
      if (!props.list) return;
      try {
        await writeOnce(
          "/api/v1/patients/{patient_id}/allergies/{allergy_id}",
          {
            params: { path: { patient_id: props.patientId, allergy_id: entry.allergy_id } },
            body: { expected_version: props.list.version, allergy },
          },
          (o) => must(session.api.PUT("/api/v1/patients/{patient_id}/allergies/{allergy_id}", o)),
        );
        saved?.();
      } finally {
        await props.onChanged(); // the list as it is now (also after a 409: changed meanwhile)
      }
      return done;
    });
  const content = (entry: AllergyEntry): Allergy => ({
    substance: entry.substance,
    code: entry.code ?? null,
    reaction: entry.reaction ?? null,
    severity: entry.severity,
    status: entry.status,
  });

  return (
    <section className="nested" aria-labelledby="allergy-panel-title">
      <h3 id="allergy-panel-title">Allergy list</h3>
      <Status action={change} />
      {entries.length === 0 ? (
        <p>No allergy recorded on the list.</p>
      ) : (
        <div className="scroll">
          <table aria-label="Allergy list">
            <thead>
              <tr>
                <th scope="col">Substance</th>
                <th scope="col">Severity</th>
                <th scope="col">Reaction</th>
                <th scope="col">Status</th>
                <th scope="col">Recorded / changed</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((entry) => {
                const edit = editing?.allergy_id === entry.allergy_id ? editing : null;
                return (
                  <tr key={entry.allergy_id} className={entry.status === "active" ? undefined : "inactive"}>
                    <td>
                      {entry.substance}
                      {entry.code ? (
                        <div className="hint">{entry.code.replace(":", ": ")}</div>
                      ) : (
                        <div className="hint">free text</div>
                      )}
                    </td>
                    <td>
                      {edit ? (
                        <Select
                          label="Severity"
                          name="edit_severity"
                          value={edit.severity}
                          onChange={(e) => setEditing({ ...edit, severity: e.target.value as AllergySeverity })}
                        >
                          {SEVERITIES.map((s) => (
                            <option key={s}>{s}</option>
                          ))}
                        </Select>
                      ) : (
                        entry.severity
                      )}
                    </td>
                    <td>
                      {edit ? (
                        <Field
                          label="Reaction"
                          name="edit_reaction"
                          maxLength={200}
                          value={edit.reaction}
                          onChange={(e) => setEditing({ ...edit, reaction: e.target.value })}
                        />
                      ) : (
                        (entry.reaction ?? "")
                      )}
                    </td>
                    <td data-testid="allergy-status">{entry.status}</td>
                    <td className="hint">
                      recorded {when(entry.recorded_at)} by {props.name(entry.recorded_by)}
                      {entry.updated_at !== entry.recorded_at && (
                        <>
                          <br />
                          changed {when(entry.updated_at)} by {props.name(entry.updated_by)}
                        </>
                      )}
                    </td>
                    <td>
                      <div className="buttons">
                        {edit ? (
                          <>
                            <button
                              disabled={change.busy}
                              onClick={() =>
                                put(
                                  entry,
                                  {
                                    ...content(entry),
                                    severity: edit.severity,
                                    reaction: edit.reaction.trim() || null,
                                  },
                                  `${entry.substance}: changed.`,
                                  stopEditing,
                                )
                              }
                            >
                              Save
                            </button>
                            <button className="secondary" onClick={stopEditing}>
                              Keep as it was
                            </button>
                          </>
                        ) : entry.status === "active" ? (
                          <>
                            <button
                              className="secondary"
                              aria-label={`Change ${entry.substance}`}
                              onClick={() =>
                                setEditing({
                                  allergy_id: entry.allergy_id,
                                  severity: entry.severity,
                                  reaction: entry.reaction ?? "",
                                })
                              }
                            >
                              Change
                            </button>
                            {(["resolved", "refuted"] as AllergyStatus[]).map((status) => (
                              <button
                                key={status}
                                className="secondary"
                                aria-label={`Mark ${entry.substance} ${status}`}
                                disabled={change.busy}
                                onClick={() =>
                                  put(entry, { ...content(entry), status }, `${entry.substance}: marked ${status}.`)
                                }
                              >
                                Mark {status}
                              </button>
                            ))}
                          </>
                        ) : (
                          <button
                            className="secondary"
                            aria-label={`Mark ${entry.substance} active again`}
                            disabled={change.busy}
                            onClick={() =>
                              put(entry, { ...content(entry), status: "active" }, `${entry.substance}: active again.`)
                            }
                          >
                            Active again
                          </button>
                        )}
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <form
        aria-label="Add an allergy"
        onChange={() => add.clear()}
        onSubmit={(e) => {
          e.preventDefault();
          void add.run(async () => {
            const substance = draft.query.trim();
            if (!substance) throw new Error("Name the substance (choose it from the search, or write it).");
            await writeOnce(
              "/api/v1/patients/{patient_id}/allergies",
              {
                params: { path: { patient_id: props.patientId } },
                body: {
                  allergy: {
                    substance,
                    ...(draft.code ? { code: draft.code } : {}),
                    severity: draft.severity,
                    reaction: draft.reaction.trim() || null,
                    status: "active" as const,
                  },
                },
              },
              (o) => must(session.api.POST("/api/v1/patients/{patient_id}/allergies", o)),
            );
            discard();
            await props.onChanged();
            return `${substance} added to the allergy list.`;
          });
        }}
      >
        <Typeahead<Substance>
          label="Allergy to (substance or class)"
          name="substance"
          query={draft.query}
          onQuery={(query) => setDraft({ ...draft, query, code: null })}
          search={search}
          optionKey={(s) => s.code}
          optionLabel={(s) => (
            <>
              {s.title} <span className="hint">({s.kind === "class" ? "drug class" : "substance"})</span>
            </>
          )}
          optionHint={(s) => (s.classes.length ? s.classes.join(", ") : "")}
          onPick={(s) =>
            setDraft({ ...draft, query: s.title.charAt(0).toUpperCase() + s.title.slice(1), code: s.code })
          }
          placeholder="e.g. penicillin, latex, NSAIDs"
          hint={
            draft.code
              ? `From the drug vocabulary: ${draft.code}`
              : "Choose from the vocabulary, or keep free text (matched by name)."
          }
          none="Not in the drug vocabulary: it is recorded as free text."
          problem={substanceProblem ?? codeProblem}
        />
        <Select
          label="Severity"
          name="severity"
          action={add}
          value={draft.severity}
          onChange={(e) => setDraft({ ...draft, severity: e.target.value as AllergySeverity })}
        >
          {SEVERITIES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </Select>
        <Field
          label="Reaction"
          name="reaction"
          maxLength={200}
          action={add}
          placeholder="e.g. anaphylaxis, rash"
          value={draft.reaction}
          onChange={(e) => setDraft({ ...draft, reaction: e.target.value })}
        />
        <button disabled={add.busy}>{add.busy ? "Adding…" : "Add allergy"}</button>
      </form>
      <Status action={add} />
      {notice && <p className="hint">{notice}</p>}
    </section>
  );
}
