// Registration tokens: issue one (shown once), list them with who registered with each,
// revoke a pending one.
import { useCallback, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import type { IssuedToken, Role, TokenInfo } from "../shared/api/types";
import { useApp, useLoad } from "../shared/context";
import { DataTable } from "../shared/DataTable";
import { when } from "../shared/time";
import { Field, field, Select, Status, useAction } from "../shared/ui";
import { useStaffNames } from "./staff";
import { writeOnce } from "../shared/submit";

type TokenState = NonNullable<TokenInfo["state"]>;

export function Tokens(): ReactNode {
  const { session } = useApp();
  const issue = useAction();
  const list = useAction();
  const staff = useStaffNames();
  const [tokens, setTokens] = useState<TokenInfo[] | null>(null);
  const [state, setState] = useState<TokenState | "">("");
  const [issued, setIssued] = useState<IssuedToken | null>(null);
  const [copied, setCopied] = useState(false);
  const { reload: reloadStaff } = staff;
  const load = useCallback(async () => {
    const reply = await must(session.api.GET("/api/v1/tokens", { params: { query: { state: state || undefined } } }));
    setTokens(reply.tokens);
    reloadStaff(); // the colleagues who registered since
  }, [session, state, reloadStaff]);
  const { run } = list;
  useLoad(run, load);
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
              const t = await writeOnce(
                "/api/v1/tokens",
                {
                  body: { role: field(form, "role") as Role, expires_hours: Number(field(form, "expires_hours")) },
                },
                (o) => must(session.api.POST("/api/v1/tokens", o)),
              );
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
          <Field
            label="Valid for (hours)"
            name="expires_hours"
            action={issue}
            type="number"
            min={1}
            max={720}
            defaultValue={72}
            required
          />
          <button disabled={issue.busy}>{issue.busy ? "Issuing…" : "Issue token"}</button>
        </form>
        <Status action={issue} />
        {issued && (
          <div className="once" role="region" aria-label="New token">
            <p>
              Token for a new <strong>{issued.role}</strong>, valid until {when(issued.expires_at)}. It is shown{" "}
              <strong>only now</strong>: give it to the new staff member, who registers with it on their own device
              (token id <code data-testid="issued-token-id">{issued.token_id.slice(0, 8)}</code>).
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
        <Select label="Show" name="state" value={state} onChange={(e) => setState(e.target.value as TokenState | "")}>
          <option value="">all</option>
          <option value="pending">pending</option>
          <option value="used">used</option>
          <option value="expired">expired</option>
          <option value="revoked">revoked</option>
        </Select>
        <Status action={list} />
        <DataTable
          label="Registration tokens"
          rows={tokens}
          error={tokens === null ? list.error : undefined}
          rowKey={(t) => t.token_id}
          empty="No tokens."
          columns={[
            { header: "Token id", cell: (t) => <code title={t.token_id}>{t.token_id.slice(0, 8)}</code> },
            { header: "Role", cell: (t) => t.role },
            { header: "State", cell: (t) => <span data-testid="token-state">{t.state}</span> },
            {
              header: "Issued",
              cell: (t) => `${when(t.created_at)}${t.issued_by ? ` by ${staff.name(t.issued_by)}` : ""}`,
            },
            { header: "Expires", cell: (t) => when(t.expires_at) },
            {
              header: "Registered",
              cell: (t) => (t.used_by ? <span data-testid="token-used-by">{staff.name(t.used_by)}</span> : "—"),
            },
            {
              header: "Action",
              cell: (t) =>
                t.state === "pending" && (
                  <button
                    className="secondary"
                    aria-label={`Revoke token ${t.token_id.slice(0, 8)}`}
                    onClick={() =>
                      void list.run(async () => {
                        await writeOnce(
                          "/api/v1/tokens/{token_id}/revoke",
                          {
                            params: { path: { token_id: t.token_id } },
                          },
                          (o) => must(session.api.POST("/api/v1/tokens/{token_id}/revoke", o)),
                        );
                        await load();
                        return `Token ${t.token_id.slice(0, 8)} revoked.`;
                      })
                    }
                  >
                    Revoke
                  </button>
                ),
            },
          ]}
        />
      </section>
    </>
  );
}
