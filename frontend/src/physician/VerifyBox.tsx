// "Verify a prescription": the verification id printed on a prescription (its id), checked
// by records (the row's integrity MAC and the prescriber's Ed25519 signature), with what
// the stored prescription says.
import { useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import { useApp, useDirectory } from "../shared/context";
import { when } from "../shared/time";
import { Field, Status, useAction } from "../shared/ui";
import { medicationText, verdict } from "./Medications";
import type { Verification } from "./types";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function VerifyBox(): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session);
  const action = useAction();
  const [id, setId] = useState("");
  const [result, setResult] = useState<Verification | null>(null);
  const rx = result?.prescription;
  return (
    <section aria-labelledby="verify-title">
      <h2 id="verify-title">Verify a prescription</h2>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(async () => {
            const wanted = id.replace(/\s+/g, "").toLowerCase();
            if (!UUID.test(wanted))
              throw new Error("A verification id is the prescription's id: 36 characters such as 3f2a…-…");
            setResult(
              await must(
                session.api.GET("/api/v1/prescriptions/{prescription_id}/verify", {
                  params: { path: { prescription_id: wanted } },
                }),
              ),
            );
          });
        }}
      >
        <Field
          label="Verification id"
          name="verification_id"
          value={id}
          onChange={(e) => {
            setId(e.target.value);
            setResult(null);
            action.clear();
          }}
          placeholder="as printed on the prescription"
          autoComplete="off"
          spellCheck={false}
          size={40}
        />
        <button disabled={action.busy}>{action.busy ? "Verifying…" : "Verify"}</button>
      </form>
      <Status action={action} />
      {result && (
        <div className={result.valid ? "ok" : "error"} role="status" data-testid="verify-result">
          <p>{verdict(result)}</p>
          {rx && (
            <p>
              {rx.medication.drug_name} {rx.medication.strength} {medicationText(rx.medication)}; signed{" "}
              {when(rx.created_at)} by {directory.name(rx.prescriber_id)}; status {rx.status}
              {rx.alerts.length > 0 ? `; ${rx.alerts.length} safety alert(s) overridden: ${rx.override_reason}` : ""}.
            </p>
          )}
        </div>
      )}
    </section>
  );
}
