// FHIR Bulk Data $export (two administrators): one requests an export sealed to a
// recipient's X25519 public key, a different one approves it, and either follows it here:
// the progress while it runs (X-Progress), the manifest when it is done, and each file to
// download, sealed as stored. Nothing here can open a file (the recipient's private key
// never comes near the app), so no patient data reaches this screen.
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { useApp } from "../shared/context";
import { when } from "../shared/time";
import { checked, Field, field, Status, useAction } from "../shared/ui";
import { useStaffNames } from "./staff";
import {
  approveExport,
  EXPORT_TYPES,
  exportStatus,
  fileName,
  parseProgress,
  requestExport,
  sealedFile,
  summary,
  type ExportStatus,
  type ManifestOutput,
} from "./bulkExport";

const POLL_MS = 1000;

export function BulkExport(): ReactNode {
  const { session } = useApp();
  const request = useAction();
  const approve = useAction();
  const follow = useAction();
  const staff = useStaffNames();
  const [requested, setRequested] = useState("");
  const [job, setJob] = useState("");
  const [status, setStatus] = useState<ExportStatus | null>(null);
  const load = useCallback(async () => {
    if (job) setStatus(await exportStatus(session, job));
  }, [session, job]);
  const { run } = follow;
  useEffect(() => void run(load), [run, load]);
  const running = status?.state === "running";
  useEffect(() => {
    if (!running) return;
    // A refusal while it runs (the export failed: a 422 saying why) stops the polling and
    // is shown; a momentary network failure too (Follow asks again).
    const stop = (exc: unknown): void => {
      setStatus(null);
      void run(() => Promise.reject(exc instanceof Error ? exc : new Error(String(exc))));
    };
    const timer = window.setInterval(() => void load().catch(stop), POLL_MS);
    return () => window.clearInterval(timer);
  }, [running, load, run]);

  const followJob = (id: string): void => {
    setStatus(null);
    setJob(id);
    if (id === job) void run(load); // the same job again: ask now
  };
  const download = (output: ManifestOutput): void =>
    void follow.run(async () => {
      const blob = await sealedFile(session, output.url);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = fileName(output);
      link.click();
      URL.revokeObjectURL(link.href);
      return `${fileName(output)} downloaded, sealed: only the recipient's private key opens it.`;
    });

  const progress = status?.state === "running" ? parseProgress(status.progress) : null;
  return (
    <>
      <section aria-labelledby="export-request-title">
        <h2 id="export-request-title">Request a bulk export</h2>
        <p>
          A FHIR export of the patients&apos; records, every file sealed to the recipient&apos;s X25519 public key. It
          starts only when a different administrator approves it.
        </p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            void request.run(async () => {
              const types = EXPORT_TYPES.filter((t) => checked(form, `type-${t}`));
              const id = await requestExport(
                session,
                field(form, "recipient"),
                field(form, "group"),
                types,
                field(form, "since"),
              );
              setRequested(id);
              followJob(id);
              return "Export requested: another administrator approves it with the job id below.";
            });
          }}
        >
          <Field label="Recipient public key (X25519, base64)" name="recipient" action={request} required />
          <Field
            label="Physician id (optional)"
            name="group"
            action={request}
            hint="Only this physician's patients in care; empty: every patient."
          />
          <fieldset>
            <legend>Resource types</legend>
            {EXPORT_TYPES.map((t) => (
              <label key={t} className="inline">
                <input type="checkbox" name={`type-${t}`} defaultChecked /> {t}
              </label>
            ))}
          </fieldset>
          <Field
            label="Changed since (optional)"
            name="since"
            action={request}
            type="datetime-local"
            hint="Only what changed after this time."
          />
          <button disabled={request.busy}>{request.busy ? "Requesting…" : "Request export"}</button>
        </form>
        <Status action={request} />
        {requested && (
          <p>
            Job id: <code data-testid="export-job">{requested}</code>
          </p>
        )}
      </section>

      <section aria-labelledby="export-approve-title">
        <h2 id="export-approve-title">Approve an export</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const id = field(e.currentTarget, "job");
            void approve.run(async () => {
              await approveExport(session, id);
              followJob(id);
              return "Approved: the export is running (its progress is below).";
            });
          }}
        >
          <Field label="Job id to approve" name="job" action={approve} required />
          <button disabled={approve.busy}>{approve.busy ? "Approving…" : "Approve export"}</button>
        </form>
        <Status action={approve} />
      </section>

      <section aria-labelledby="export-status-title">
        <h2 id="export-status-title">Export status</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            followJob(field(e.currentTarget, "follow"));
          }}
        >
          <Field label="Job id to follow" name="follow" required />
          <button className="secondary">Follow</button>
        </form>
        <Status action={follow} />
        {status?.state === "running" && (
          <div role="group" aria-label="Export progress">
            <p data-testid="export-progress">{status.progress}</p>
            {progress && (
              <progress
                max={Math.max(1, progress.total)}
                value={progress.done}
                aria-label={`${progress.done} of ${progress.total} patients`}
              />
            )}
          </div>
        )}
        {status?.state === "complete" && (
          <div role="region" aria-label="Export manifest">
            <p data-testid="export-complete">
              Complete: requested {when(status.manifest.transactionTime)}
              {status.manifest.extension?.requestedBy ? ` by ${staff.name(status.manifest.extension.requestedBy)}` : ""}
              {status.manifest.extension?.approvedBy
                ? `, approved by ${staff.name(status.manifest.extension.approvedBy)}`
                : ""}
              . Each file is sealed to the recipient key {status.manifest.extension?.recipientPublicKey ?? ""}.
            </p>
            <table aria-label="Exported files">
              <thead>
                <tr>
                  <th scope="col">Type</th>
                  <th scope="col">Files</th>
                  <th scope="col">Resources</th>
                </tr>
              </thead>
              <tbody>
                {summary(status.manifest).map((row) => (
                  <tr key={row.type}>
                    <td>{row.type}</td>
                    <td>{row.files}</td>
                    <td>{row.count}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <ul aria-label="Sealed files">
              {status.manifest.output.map((o) => (
                <li key={o.url}>
                  <button className="secondary" onClick={() => download(o)} disabled={follow.busy}>
                    Download {fileName(o)}
                  </button>{" "}
                  ({o.count ?? 0} resources)
                </li>
              ))}
            </ul>
          </div>
        )}
      </section>
    </>
  );
}
