// Diagnoses as WHO ICD-10 entries, searched as you type (GET /icd10): one diagnosis per
// pick, kept as a list of chips with the code and the classification's whole title.
import { useCallback, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import { useApp } from "../shared/context";
import type { Diagnosis, Icd10Entry } from "./types";
import { Typeahead } from "./Typeahead";

const MAX_DIAGNOSES = 20;

export function DiagnosisPicker(props: {
  diagnoses: Diagnosis[];
  onChange: (diagnoses: Diagnosis[]) => void;
  problem?: string;
}): ReactNode {
  const { session } = useApp();
  const [query, setQuery] = useState("");
  const { diagnoses, onChange } = props;
  const search = useCallback(
    async (q: string) =>
      (await must(session.api.GET("/api/v1/icd10", { params: { query: { q, limit: 15 } } }))).entries,
    [session],
  );
  const full = diagnoses.length >= MAX_DIAGNOSES;
  return (
    <div className="wide">
      <Typeahead<Icd10Entry>
        label="Diagnosis (ICD-10)"
        name="diagnosis_search"
        query={query}
        onQuery={setQuery}
        search={search}
        optionKey={(e) => e.code}
        optionLabel={(e) => (
          <>
            <strong>{e.code}</strong> {e.title}
          </>
        )}
        onPick={(entry) => {
          setQuery("");
          if (full || diagnoses.some((d) => d.code === entry.code)) return;
          onChange([...diagnoses, { code: entry.code, description: entry.title }]);
        }}
        placeholder="code or words, e.g. J45 or asthma"
        hint={
          full
            ? `At most ${MAX_DIAGNOSES} diagnoses.`
            : "Search the WHO ICD-10 classification; pick one diagnosis at a time."
        }
        none="No ICD-10 entry matches: try a code (J45) or other words."
        problem={props.problem}
      />
      <ul className="chips" aria-label="Chosen diagnoses">
        {diagnoses.map((d) => (
          <li key={d.code} className="chip">
            <strong>{d.code}</strong> {d.description}
            <button
              type="button"
              className="link"
              aria-label={`Remove ${d.code}`}
              onClick={() => onChange(diagnoses.filter((x) => x.code !== d.code))}
            >
              ×
            </button>
          </li>
        ))}
        {diagnoses.length === 0 && <li className="hint">No diagnosis chosen.</li>}
      </ul>
    </div>
  );
}
