// Key lifecycle, online: after a rotation, every row of every service is re-encrypted (and
// re-MAC'd) under the active keys by its own service, through the keyvault, while the clinic
// works. This screen starts a run, shows its progress (rows, rate, ETA, services still at
// work, rows the run could not move), and cancels it. A retired key still in use is named.
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import type { components } from "../shared/api/schema";
import { useApp, useLoad } from "../shared/context";
import { when } from "../shared/time";
import { Status, useAction } from "../shared/ui";
import { writeOnce } from "../shared/submit";

type RewrapStatus = components["schemas"]["RewrapStatus"];
type KeyInfo = components["schemas"]["KeyInfo"];

const POLL_MS = 2000;

function eta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

export function Rewrap({ keys }: { keys: KeyInfo[] }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const [status, setStatus] = useState<RewrapStatus | null>(null);
  const load = useCallback(async () => {
    setStatus(await must(session.api.GET("/api/v1/vault/rewrap")));
  }, [session]);
  const { run } = action;
  useLoad(run, load);
  const running = status?.state === "running";
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(() => void load().catch(() => undefined), POLL_MS);
    return () => window.clearInterval(timer);
  }, [running, load]);

  const start = (): void =>
    void action.run(async () => {
      setStatus(
        await writeOnce(
          "/api/v1/vault/rewrap",
          {
            body: { reindex: false, batch_rows: 200, rows_per_second: 2000, lease_seconds: 15 },
          },
          (o) => must(session.api.POST("/api/v1/vault/rewrap", o)),
        ),
      );
      return "Rewrap started: each service re-encrypts its rows in small steps while the clinic works.";
    });
  const cancel = (): void =>
    void action.run(async () => {
      setStatus(await must(session.api.POST("/api/v1/vault/rewrap/cancel")));
      return "Rewrap cancelled: rows already moved stay under the active keys; start again to finish.";
    });

  const retired = Object.entries(status?.retired_in_use ?? {}).filter(([, n]) => n > 0);
  return (
    <section aria-labelledby="rewrap-title">
      <h2 id="rewrap-title">Keys and rewrap</h2>
      {keys.length > 0 && (
        <table aria-label="Keys">
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">Purpose</th>
              <th scope="col">State</th>
              <th scope="col">Uses</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => (
              <tr key={`${k.purpose}-${k.key_id}`}>
                <td>{k.key_id}</td>
                <td>{k.purpose}</td>
                <td data-testid="key-state">{k.decrypts || k.state !== "retired" ? k.state : "retired, refused"}</td>
                <td>{k.use_count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p>
        After a rotation, rewrap moves every encrypted field and MAC of every service to the active keys, so retired
        keys can be destroyed. It runs online, a few hundred rows at a time; a user&apos;s change made meanwhile wins.
      </p>
      <Status action={action} />
      {status?.run_id ? (
        <div role="group" aria-label="Rewrap progress">
          <p data-testid="rewrap-state">
            {status.state === "running" ? "Running" : status.state === "complete" ? "Complete" : "Cancelled"}
            {status.started_at ? `, started ${when(status.started_at)}` : ""}
            {status.finished_at ? `, ended ${when(status.finished_at)}` : ""}
          </p>
          <progress
            max={Math.max(1, status.rows_total)}
            value={status.rows_done}
            aria-label={`${status.rows_done} of ${status.rows_total} rows`}
          />{" "}
          <span data-testid="rewrap-rows">
            {status.rows_done} of {status.rows_total} rows
            {running && status.rate_rows_per_s > 0 ? `, ${Math.round(status.rate_rows_per_s)} rows/s` : ""}
            {running ? ` ${eta(status.eta_seconds)}` : ""}
          </span>
          {status.services_pending.length > 0 && <p>Still at work: {status.services_pending.join(", ")}.</p>}
          {status.failures.length > 0 && (
            <p className="error">
              {status.failures.length} row{status.failures.length === 1 ? "" : "s"} could not be moved (for example{" "}
              {status.failures[0].service ?? ""} {status.failures[0].table}: {status.failures[0].reason}).
            </p>
          )}
          {retired.length > 0 && (
            <p>Retired keys still in use: {retired.map(([key, n]) => `key ${key} by ${n} rows`).join(", ")}.</p>
          )}
        </div>
      ) : (
        status && <p>No rewrap has run yet.</p>
      )}
      {running ? (
        <button className="secondary" onClick={cancel} disabled={action.busy}>
          Cancel the rewrap
        </button>
      ) : (
        <button onClick={start} disabled={action.busy || status === null}>
          Start a rewrap
        </button>
      )}
    </section>
  );
}
