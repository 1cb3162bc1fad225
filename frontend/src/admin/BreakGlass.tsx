// The break-glass report: every chart opened without a care relationship, with the reason;
// administrators review and acknowledge each, and follow the patient's access history.
import { useCallback, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import type { BreakGlassGrant } from "../shared/api/types";
import { useApp, useDirectory, useLive, useLoad } from "../shared/context";
import { when } from "../shared/time";
import { Field, field, Loading, Status, useAction } from "../shared/ui";
import { writeOnce } from "../shared/submit";

export function BreakGlass({ onHistory }: { onHistory: (patientId: string) => void }): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session);
  const action = useAction();
  const [grants, setGrants] = useState<BreakGlassGrant[] | null>(null);
  const [pendingOnly, setPendingOnly] = useState(false);
  const load = useCallback(async () => {
    setGrants(
      (await must(session.api.GET("/api/v1/break-glass", { params: { query: { unacknowledged_only: pendingOnly } } })))
        .grants,
    );
  }, [session, pendingOnly]);
  const { run } = action;
  useLoad(run, load);
  useLive(
    ["records.break_glass"],
    useCallback(() => void load().catch(() => undefined), [load]),
  );
  return (
    <section aria-labelledby="bg-title">
      <h2 id="bg-title">Emergency (break-glass) access</h2>
      <p>Every chart a physician opened without a care relationship, with their reason. Review and acknowledge each.</p>
      <label className="inline">
        <input type="checkbox" checked={pendingOnly} onChange={(e) => setPendingOnly(e.target.checked)} /> Only those
        not yet reviewed
      </label>
      <Status action={action} />
      {grants === null ? (
        <Loading what="the report" />
      ) : (
        <div className="scroll">
          <table aria-label="Break-glass report">
            <thead>
              <tr>
                <th scope="col">Opened</th>
                <th scope="col">Physician</th>
                <th scope="col">Patient</th>
                <th scope="col">Reason</th>
                <th scope="col">Expires</th>
                <th scope="col">Review</th>
              </tr>
            </thead>
            <tbody>
              {grants.map((g) => (
                <tr key={g.grant_id}>
                  <td>{when(g.opened_at)}</td>
                  <td>{directory.name(g.physician_id)}</td>
                  <td>
                    <button
                      className="link"
                      onClick={() => onHistory(g.patient_id)}
                      aria-label={`Access history of patient ${g.patient_id}`}
                    >
                      <code>{g.patient_id}</code>
                    </button>
                  </td>
                  <td>{g.reason}</td>
                  <td>{when(g.expires_at)}</td>
                  <td>
                    {g.acknowledged_by ? (
                      `reviewed by ${directory.name(g.acknowledged_by)}${g.note ? `: ${g.note}` : ""}`
                    ) : (
                      <form
                        className="inline"
                        onSubmit={(e) => {
                          e.preventDefault();
                          const note = field(e.currentTarget, "note");
                          void action.run(async () => {
                            await writeOnce(
                              "/api/v1/break-glass/{grant_id}/acknowledge",
                              {
                                params: { path: { grant_id: g.grant_id } },
                                body: { note },
                              },
                              (o) => must(session.api.POST("/api/v1/break-glass/{grant_id}/acknowledge", o)),
                            );
                            await load();
                            return "Acknowledged.";
                          });
                        }}
                      >
                        <Field label="Note" name="note" maxLength={1000} />
                        <button className="secondary">Acknowledge</button>
                      </form>
                    )}
                  </td>
                </tr>
              ))}
              {grants.length === 0 && (
                <tr>
                  <td colSpan={6}>No emergency access.</td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
