// Administrators: registration tokens, staff accounts, the keyvault, the audit log and the
// break-glass report. They never see patient data (the API refuses it; nothing here asks).
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { call, unsigned } from "./api";
import { sealShare } from "./sealed";
import { useApp, useDirectory, useLive, when } from "./shared";
import { Field, field, Loading, Select, Status, useAction } from "./ui";

interface Token {
  token_id: string;
  role: string;
  state: string;
  expires_at: string;
  created_at: string;
  used_by: string | null;
}
interface Account {
  account_id: string;
  username: string;
  display_name: string;
  role: string;
  status: string;
  specialty: string | null;
}
interface Replica {
  instance: string;
  state: string;
  progress: number;
  threshold: number | null;
  shares: number | null;
  transport_public_key: string;
  keys: { key_id: number; purpose: string; state: string; use_count: number }[];
  message: string | null;
}
interface AuditEntry {
  seq: number;
  event: {
    type: string;
    action: string;
    outcome: string;
    recorded: string;
    patient_id: string | null;
    agent: { account_id: string | null; role: string | null; address: string | null };
    purpose_of_use: string | null;
    detail: string | null;
  };
}
interface Grant {
  grant_id: string;
  patient_id: string;
  physician_id: string;
  opened_at: string;
  expires_at: string;
  reason: string;
  acknowledged_by: string | null;
  acknowledged_at: string | null;
  note: string | null;
}

export function Admin({ tab }: { tab: string }): ReactNode {
  if (tab === "Tokens") return <Tokens />;
  if (tab === "Staff") return <Staff />;
  if (tab === "Keyvault") return <Keyvault />;
  if (tab === "Audit") return <Audit />;
  return <BreakGlass />;
}

function Tokens(): ReactNode {
  const { session } = useApp();
  const issue = useAction();
  const list = useAction();
  const [tokens, setTokens] = useState<Token[] | null>(null);
  const [state, setState] = useState("");
  const [issued, setIssued] = useState<{ token_id: string; token: string; role: string; expires_at: string } | null>(null);
  const [copied, setCopied] = useState(false);
  const load = useCallback(async () => {
    setTokens((await call<{ tokens: Token[] }>(session, "GET", "/api/v1/tokens", undefined, { state })).tokens);
  }, [session, state]);
  useEffect(() => void list.run(load), [load]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <>
      <section aria-labelledby="issue-title">
        <h2 id="issue-title">Issue a registration token</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            void issue.run(async () => {
              setCopied(false);
              const t = await call<{ token_id: string; token: string; role: string; expires_at: string }>(session, "POST", "/api/v1/tokens", {
                role: field(form, "role"),
                expires_hours: Number(field(form, "expires_hours")),
              });
              setIssued(t);
              await load();
            });
          }}
        >
          <Select label="Role" name="role" action={issue} defaultValue="physician">
            <option value="physician">physician</option>
            <option value="receptionist">receptionist</option>
            <option value="administrator">administrator</option>
          </Select>
          <Field label="Valid for (hours)" name="expires_hours" action={issue} type="number" min={1} max={720} defaultValue={72} required />
          <button disabled={issue.busy}>{issue.busy ? "Issuing…" : "Issue token"}</button>
        </form>
        <Status action={issue} />
        {issued && (
          <div className="once" role="region" aria-label="New token">
            <p>
              Token for a new <strong>{issued.role}</strong>, valid until {when(issued.expires_at)}. It is shown{" "}
              <strong>only now</strong>: give it to the new staff member, who registers with it on their own device (token id{" "}
              <code data-testid="issued-token-id">{issued.token_id.slice(0, 8)}</code>).
            </p>
            <code data-testid="issued-token">{issued.token}</code>{" "}
            <button
              className="secondary"
              onClick={() =>
                void navigator.clipboard?.writeText(issued.token).then(
                  () => setCopied(true),
                  () => setCopied(false),
                )
              }
            >
              {copied ? "Copied" : "Copy"}
            </button>{" "}
            <button className="secondary" onClick={() => setIssued(null)}>
              Done
            </button>
          </div>
        )}
      </section>
      <section aria-labelledby="tokens-title">
        <h2 id="tokens-title">Tokens</h2>
        <Select label="Show" name="state" value={state} onChange={(e) => setState(e.target.value)}>
          <option value="">all</option>
          <option value="pending">pending</option>
          <option value="used">used</option>
          <option value="expired">expired</option>
          <option value="revoked">revoked</option>
        </Select>
        <Status action={list} />
        {tokens === null ? (
          <Loading what="tokens" />
        ) : (
          <div className="scroll">
            <table aria-label="Registration tokens">
              <thead>
                <tr>
                  <th scope="col">Token id</th>
                  <th scope="col">Role</th>
                  <th scope="col">State</th>
                  <th scope="col">Issued</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Action</th>
                </tr>
              </thead>
              <tbody>
                {tokens.map((t) => (
                  <tr key={t.token_id}>
                    <td>
                      <code>{t.token_id.slice(0, 8)}</code>
                    </td>
                    <td>{t.role}</td>
                    <td data-testid="token-state">{t.state}</td>
                    <td>{when(t.created_at)}</td>
                    <td>{when(t.expires_at)}</td>
                    <td>
                      {t.state === "pending" && (
                        <button
                          className="secondary"
                          aria-label={`Revoke token ${t.token_id.slice(0, 8)}`}
                          onClick={() =>
                            void list.run(async () => {
                              await call(session, "POST", `/api/v1/tokens/${t.token_id}/revoke`, {});
                              await load();
                              return `Token ${t.token_id.slice(0, 8)} revoked.`;
                            })
                          }
                        >
                          Revoke
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
                {tokens.length === 0 && (
                  <tr>
                    <td colSpan={6}>No tokens.</td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function Staff(): ReactNode {
  const { session, me } = useApp();
  const action = useAction();
  const [accounts, setAccounts] = useState<Account[] | null>(null);
  const load = useCallback(async () => {
    setAccounts((await call<{ accounts: Account[] }>(session, "GET", "/api/v1/staff")).accounts);
  }, [session]);
  useEffect(() => void action.run(load), [load]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <section aria-labelledby="staff-title">
      <h2 id="staff-title">Staff</h2>
      <p>A disabled account is refused at once on every request; enabling it restores access.</p>
      <Status action={action} />
      {accounts === null ? (
        <Loading what="staff" />
      ) : (
        <div className="scroll">
          <table aria-label="Staff accounts">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Username</th>
                <th scope="col">Role</th>
                <th scope="col">Specialty</th>
                <th scope="col">Status</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {accounts.map((a) => (
                <tr key={a.account_id} data-username={a.username}>
                  <td>{a.display_name}</td>
                  <td>{a.username}</td>
                  <td>{a.role}</td>
                  <td>{a.specialty ?? ""}</td>
                  <td data-testid="account-status">{a.status}</td>
                  <td>
                    {a.account_id === me.account_id ? (
                      <span className="hint">you</span>
                    ) : (
                      <button
                        className={a.status === "active" ? "danger" : "secondary"}
                        aria-label={`${a.status === "active" ? "Disable" : "Enable"} ${a.username}`}
                        onClick={() =>
                          void action.run(async () => {
                            const status = a.status === "active" ? "disabled" : "active";
                            await call(session, "PUT", `/api/v1/staff/${a.account_id}/status`, { status });
                            await load();
                            return `${a.username} is now ${status}.`;
                          })
                        }
                      >
                        {a.status === "active" ? "Disable" : "Enable"}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Keyvault(): ReactNode {
  const { session } = useApp();
  const status = useAction();
  const unseal = useAction();
  const seal = useAction();
  const [replicas, setReplicas] = useState<Replica[] | null>(null);
  const [confirmSeal, setConfirmSeal] = useState(false);
  const load = useCallback(async () => {
    setReplicas((await unsigned<{ replicas: Replica[] }>("GET", "/api/v1/vault/status")).replicas);
  }, []);
  useEffect(() => void status.run(load), [load]); // eslint-disable-line react-hooks/exhaustive-deps
  const sealed = (replicas ?? []).filter((r) => r.state === "sealed");
  const keys = replicas?.[0]?.keys ?? [];
  return (
    <>
      <section aria-labelledby="vault-title">
        <h2 id="vault-title">Keyvault</h2>
        <button className="secondary" onClick={() => void status.run(load)} disabled={status.busy}>
          Refresh
        </button>
        <Status action={status} />
        {replicas === null ? (
          <Loading what="the keyvault's status" />
        ) : replicas.length === 0 ? (
          <p className="error">No keyvault replica answers.</p>
        ) : (
          <table aria-label="Keyvault replicas">
            <thead>
              <tr>
                <th scope="col">Replica</th>
                <th scope="col">State</th>
                <th scope="col">Unseal progress</th>
              </tr>
            </thead>
            <tbody>
              {replicas.map((r) => (
                <tr key={r.instance}>
                  <td>
                    <code>{r.instance}</code>
                  </td>
                  <td data-testid="vault-state">{r.state}</td>
                  <td>{r.state === "sealed" ? `${r.progress} of ${r.threshold ?? "?"} shares` : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {keys.length > 0 && (
          <p>
            Keys: {keys.filter((k) => k.state === "active").length} active of {keys.length} (
            {keys.reduce((n, k) => n + k.use_count, 0)} uses).
          </p>
        )}
      </section>
      <section aria-labelledby="unseal-title">
        <h2 id="unseal-title">Unseal</h2>
        <p>
          Your share is sealed here, in this browser, to each sealed replica's own X25519 key: the gateway and the bus
          only ever carry ciphertext.
        </p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const input = form.elements.namedItem("share") as HTMLInputElement;
            const share = input.value.trim();
            void unseal.run(async () => {
              if (!share) throw new Error("Enter your share.");
              const current = (await unsigned<{ replicas: Replica[] }>("GET", "/api/v1/vault/status")).replicas;
              const targets = current.filter((r) => r.state === "sealed");
              if (targets.length === 0) return "No replica is sealed.";
              const lines: string[] = [];
              for (const r of targets) {
                const reply = await unsigned<Replica>("POST", "/api/v1/vault/unseal", {
                  instance: r.instance,
                  sealed_share: sealShare(r.transport_public_key, share),
                });
                lines.push(
                  `${r.instance}: ${reply.state}${reply.state === "sealed" ? ` (${reply.progress} of ${reply.threshold})` : ""}${reply.message ? `, ${reply.message}` : ""}`,
                );
              }
              input.value = "";
              await load();
              return lines.join("; ");
            });
          }}
        >
          <Field label="Your unseal share" name="share" type="password" autoComplete="off" required spellCheck={false} action={unseal} />
          <button disabled={unseal.busy || (replicas !== null && sealed.length === 0)}>
            {unseal.busy ? "Submitting…" : "Submit share"}
          </button>
        </form>
        <Status action={unseal} />
      </section>
      <section aria-labelledby="seal-title">
        <h2 id="seal-title">Seal</h2>
        <p>Sealing wipes the keys from every replica: patient data is unavailable until enough shares unseal it again.</p>
        {confirmSeal ? (
          <p>
            <button
              className="danger"
              disabled={seal.busy}
              onClick={() =>
                void seal.run(async () => {
                  await call(session, "POST", "/api/v1/vault/seal", {});
                  setConfirmSeal(false);
                  await load();
                  return "Every replica is sealed.";
                })
              }
            >
              Seal every replica now
            </button>{" "}
            <button className="secondary" onClick={() => setConfirmSeal(false)}>
              Cancel
            </button>
          </p>
        ) : (
          <button className="secondary" onClick={() => setConfirmSeal(true)}>
            Seal the keyvault…
          </button>
        )}
        <Status action={seal} />
      </section>
    </>
  );
}

const SORTS = ["seq", "recorded", "account_id", "patient_id", "action", "outcome", "type"] as const;
const PAGE = 50;

function Audit(): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session);
  const action = useAction();
  const history = useAction();
  const verify = useAction();
  const [filters, setFilters] = useState<Record<string, string>>({});
  const [sort, setSort] = useState<string>("seq");
  const [descending, setDescending] = useState(true);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ entries: AuditEntry[]; total: number } | null>(null);
  const [patientHistory, setPatientHistory] = useState<{ patient: string; entries: AuditEntry[]; total: number } | null>(null);

  const load = useCallback(async () => {
    const params: Record<string, string | number | boolean> = { ...filters, sort, descending, offset, limit: PAGE };
    for (const name of ["recorded_from", "recorded_to"]) {
      if (filters[name]) params[name] = new Date(filters[name]).toISOString();
    }
    setPage(await call<{ entries: AuditEntry[]; total: number }>(session, "GET", "/api/v1/audit/events", undefined, params));
  }, [session, filters, sort, descending, offset]);
  useEffect(() => void action.run(load), [load]); // eslint-disable-line react-hooks/exhaustive-deps

  const header = (name: (typeof SORTS)[number], label: string): ReactNode => (
    <th scope="col" aria-sort={sort === name ? (descending ? "descending" : "ascending") : undefined}>
      <button
        className="link"
        onClick={() => {
          if (sort === name) setDescending(!descending);
          else {
            setSort(name);
            setDescending(false);
          }
          setOffset(0);
        }}
      >
        {label}
        {sort === name ? (descending ? " ▼" : " ▲") : ""}
      </button>
    </th>
  );

  return (
    <>
      <section aria-labelledby="audit-title">
        <h2 id="audit-title">Audit log</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const next: Record<string, string> = {};
            for (const name of ["recorded_from", "recorded_to", "account_id", "patient_id", "action", "outcome", "type"]) {
              const value = field(form, name);
              if (value) next[name] = value;
            }
            setOffset(0);
            setFilters(next);
          }}
        >
          <Field label="From" name="recorded_from" type="datetime-local" action={action} />
          <Field label="To" name="recorded_to" type="datetime-local" action={action} />
          <Select label="Staff member" name="account_id" defaultValue="" action={action}>
            <option value="">anyone</option>
            {directory.staff.map((s) => (
              <option key={s.account_id} value={s.account_id}>
                {s.display_name} ({s.role})
              </option>
            ))}
          </Select>
          <Field label="Patient id" name="patient_id" action={action} spellCheck={false} />
          <Select label="Action" name="action" defaultValue="" action={action}>
            <option value="">any</option>
            <option value="C">C: create</option>
            <option value="R">R: read</option>
            <option value="U">U: update</option>
            <option value="D">D: delete</option>
            <option value="E">E: execute</option>
          </Select>
          <Select label="Outcome" name="outcome" defaultValue="" action={action}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="refused">refused</option>
            <option value="failure">failure</option>
          </Select>
          <Field label="Event type" name="type" action={action} placeholder="e.g. patient.read" />
          <button disabled={action.busy}>Apply filters</button>
        </form>
        <p>
          <button
            className="secondary"
            disabled={verify.busy}
            onClick={() =>
              void verify.run(async () => {
                const v = await call<{ ok: boolean; entries: number; checkpoints: number; first_bad_seq: number | null; problem: string | null }>(
                  session,
                  "GET",
                  "/api/v1/audit/verify",
                );
                if (!v.ok) throw new Error(`The chain is broken at entry ${v.first_bad_seq}: ${v.problem}`);
                return `The chain is intact: ${v.entries} entries, ${v.checkpoints} checkpoints.`;
              })
            }
          >
            Verify the hash chain
          </button>
        </p>
        <Status action={verify} />
        <Status action={action} />
        {page === null ? (
          <Loading what="the audit log" />
        ) : (
          <>
            <p>
              {page.total} entries{page.total > PAGE ? `, showing ${offset + 1}–${Math.min(offset + PAGE, page.total)}` : ""}.{" "}
              <button className="secondary" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
                Previous
              </button>{" "}
              <button className="secondary" disabled={offset + PAGE >= page.total} onClick={() => setOffset(offset + PAGE)}>
                Next
              </button>
            </p>
            <AuditTable entries={page.entries} name={directory.name} header={header} />
          </>
        )}
      </section>
      <section aria-labelledby="history-title">
        <h2 id="history-title">Patient access history</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const patient = field(e.currentTarget, "history_patient");
            void history.run(async () => {
              const reply = await call<{ entries: AuditEntry[]; total: number }>(session, "GET", `/api/v1/audit/patients/${patient}`, undefined, {
                limit: 200,
              });
              setPatientHistory({ patient, ...reply });
            });
          }}
        >
          <Field label="Patient id" name="history_patient" required spellCheck={false} action={history} />
          <button disabled={history.busy}>Show who accessed this record</button>
        </form>
        <Status action={history} />
        {patientHistory && (
          <>
            <p>
              {patientHistory.total} accesses to patient <code>{patientHistory.patient.slice(0, 8)}</code>.
            </p>
            <AuditTable entries={patientHistory.entries} name={directory.name} />
          </>
        )}
      </section>
    </>
  );
}

function AuditTable(props: {
  entries: AuditEntry[];
  name: (id: string) => string;
  header?: (name: (typeof SORTS)[number], label: string) => ReactNode;
}): ReactNode {
  const h = props.header ?? ((_: string, label: string) => <th scope="col">{label}</th>);
  return (
    <div className="scroll">
      <table aria-label="Audit entries">
        <thead>
          <tr>
            {h("seq", "#")}
            {h("recorded", "When")}
            {h("type", "Event")}
            {h("action", "Action")}
            {h("outcome", "Outcome")}
            {h("account_id", "Who")}
            {h("patient_id", "Patient")}
          </tr>
        </thead>
        <tbody>
          {props.entries.map(({ seq, event }) => (
            <tr key={seq}>
              <td>{seq}</td>
              <td>{when(event.recorded)}</td>
              <td>
                {event.type}
                {event.purpose_of_use ? ` (${event.purpose_of_use})` : ""}
                {event.detail ? <div className="hint">{event.detail}</div> : null}
              </td>
              <td>{event.action}</td>
              <td className={event.outcome === "success" ? "" : "warn"}>{event.outcome}</td>
              <td>{event.agent.account_id ? props.name(event.agent.account_id) : (event.agent.address ?? "—")}</td>
              <td>{event.patient_id ? <code title={event.patient_id}>{event.patient_id.slice(0, 8)}</code> : ""}</td>
            </tr>
          ))}
          {props.entries.length === 0 && (
            <tr>
              <td colSpan={7}>No entries.</td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function BreakGlass(): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session);
  const action = useAction();
  const [grants, setGrants] = useState<Grant[] | null>(null);
  const [pendingOnly, setPendingOnly] = useState(false);
  const load = useCallback(async () => {
    setGrants(
      (await call<{ grants: Grant[] }>(session, "GET", "/api/v1/break-glass", undefined, { unacknowledged_only: pendingOnly })).grants,
    );
  }, [session, pendingOnly]);
  useEffect(() => void action.run(load), [load]); // eslint-disable-line react-hooks/exhaustive-deps
  useLive(["records.break_glass"], useCallback(() => void load().catch(() => undefined), [load]));
  return (
    <section aria-labelledby="bg-title">
      <h2 id="bg-title">Emergency (break-glass) access</h2>
      <p>Every chart a physician opened without a care relationship, with their reason. Review and acknowledge each.</p>
      <label className="inline">
        <input type="checkbox" checked={pendingOnly} onChange={(e) => setPendingOnly(e.target.checked)} /> Only those not yet
        reviewed
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
                    <code title={g.patient_id}>{g.patient_id.slice(0, 8)}</code>
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
                            await call(session, "POST", `/api/v1/break-glass/${g.grant_id}/acknowledge`, { note });
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
