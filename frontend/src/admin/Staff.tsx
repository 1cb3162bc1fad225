// Staff accounts: who works here, who is on duty (checked in by the time clock or by hand
// here, with a reason), and disabling (after a confirmation: it locks a colleague out at
// once) or enabling an account.
import { useCallback, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import type { Account, DutyList } from "../shared/api/types";
import { useApp, useLive, useLoad } from "../shared/context";
import { DataTable } from "../shared/DataTable";
import { dutyText } from "../shared/duty";
import { Field, Status, useAction } from "../shared/ui";
import { writeOnce } from "../shared/submit";

export function Staff(): ReactNode {
  const { session, me } = useApp();
  const action = useAction();
  const [accounts, setAccounts] = useState<Account[] | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [duty, setDuty] = useState<DutyList | null>(null);
  const [checking, setChecking] = useState<{ id: string; kind: "check-in" | "check-out" } | null>(null);
  const [reason, setReason] = useState("");
  const [place, setPlace] = useState("");
  const loadDuty = useCallback(async () => {
    setDuty(await must(session.api.GET("/api/v1/attendance")));
  }, [session]);
  const load = useCallback(async () => {
    const [staff] = await Promise.all([must(session.api.GET("/api/v1/staff")), loadDuty()]);
    setAccounts(staff.accounts);
  }, [session, loadDuty]);
  const { run } = action;
  useLoad(run, load);
  useLive(["attendance."], () => void loadDuty().catch(() => undefined));

  const dutyOf = (a: Account): string => {
    const status = duty?.staff.find((d) => d.account_id === a.account_id);
    return status ? dutyText(status) : a.role === "administrator" ? "not bound" : "";
  };

  const check = (a: Account, kind: "check-in" | "check-out"): void =>
    void action.run(async () => {
      const path = kind === "check-in" ? "/api/v1/staff/{account_id}/check-in" : "/api/v1/staff/{account_id}/check-out";
      await writeOnce(
        path,
        {
          params: { path: { account_id: a.account_id } },
          body: { reason, place },
        },
        (o) => must(session.api.POST(path, o)),
      );
      setChecking(null);
      setReason("");
      setPlace("");
      await loadDuty();
      return `${a.display_name} is now ${kind === "check-in" ? "on duty" : "off duty"}.`;
    });

  const setStatus = (a: Account, status: "active" | "disabled"): void =>
    void action.run(async () => {
      await writeOnce(
        "/api/v1/staff/{account_id}/status",
        {
          params: { path: { account_id: a.account_id } },
          body: { status },
        },
        (o) => must(session.api.PUT("/api/v1/staff/{account_id}/status", o)),
      );
      setConfirming(null);
      await load();
      return `${a.display_name} (${a.username}) is now ${status}.`;
    });

  return (
    <section aria-labelledby="staff-title">
      <h2 id="staff-title">Staff</h2>
      <p>A disabled account is refused at once on every request; enabling it restores access.</p>
      {duty?.required && (
        <p>
          Physicians and receptionists reach patient data only while on duty. A shift ends by itself after{" "}
          {duty.max_shift_hours} h. Check someone in or out by hand only with a reason: it is audited.
        </p>
      )}
      <Status action={action} />
      <DataTable
        label="Staff accounts"
        rows={accounts}
        error={accounts === null ? action.error : undefined}
        rowKey={(a) => a.account_id}
        empty="No accounts."
        rowProps={(a) => ({ "data-username": a.username })}
        columns={[
          { header: "Name", cell: (a) => a.display_name },
          { header: "Username", cell: (a) => a.username },
          { header: "Role", cell: (a) => a.role },
          { header: "Specialty", cell: (a) => a.specialty ?? "" },
          { header: "Status", cell: (a) => <span data-testid="account-status">{a.status}</span> },
          {
            header: "Duty",
            cell: (a) =>
              a.role === "administrator" || a.status !== "active" ? (
                <span data-testid="duty">{dutyOf(a)}</span>
              ) : checking?.id === a.account_id ? (
                <form
                  className="confirm"
                  aria-label={`${checking.kind === "check-in" ? "Check in" : "Check out"} ${a.username}`}
                  onSubmit={(e) => {
                    e.preventDefault();
                    check(a, checking.kind);
                  }}
                >
                  <Field
                    label="Reason"
                    name="reason"
                    action={action}
                    required
                    minLength={3}
                    maxLength={500}
                    value={reason}
                    onChange={(e) => setReason(e.target.value)}
                  />
                  <Field
                    label="Place (optional)"
                    name="place"
                    action={action}
                    maxLength={200}
                    value={place}
                    onChange={(e) => setPlace(e.target.value)}
                  />
                  <button disabled={action.busy}>{checking.kind === "check-in" ? "Check in" : "Check out"}</button>{" "}
                  <button type="button" className="secondary" onClick={() => setChecking(null)}>
                    Cancel
                  </button>
                </form>
              ) : (
                <>
                  <span data-testid="duty">{dutyOf(a)}</span>{" "}
                  <button
                    className="secondary"
                    aria-label={`${dutyOf(a).startsWith("On duty") ? "Check out" : "Check in"} ${a.username}`}
                    onClick={() =>
                      setChecking({
                        id: a.account_id,
                        kind: dutyOf(a).startsWith("On duty") ? "check-out" : "check-in",
                      })
                    }
                  >
                    {dutyOf(a).startsWith("On duty") ? "Check out…" : "Check in…"}
                  </button>
                </>
              ),
          },
          {
            header: "Action",
            cell: (a) =>
              a.account_id === me.account_id ? (
                <span className="hint">you</span>
              ) : a.status !== "active" ? (
                <button
                  className="secondary"
                  aria-label={`Enable ${a.username}`}
                  onClick={() => setStatus(a, "active")}
                >
                  Enable
                </button>
              ) : confirming === a.account_id ? (
                <div className="confirm" role="group" aria-label={`Disable ${a.username}?`}>
                  <p>
                    Disable {a.display_name}? Every request of theirs is refused from now on, until an administrator
                    enables the account again.
                  </p>
                  <button className="danger" disabled={action.busy} onClick={() => setStatus(a, "disabled")}>
                    Yes, disable {a.username}
                  </button>{" "}
                  <button className="secondary" onClick={() => setConfirming(null)}>
                    Keep active
                  </button>
                </div>
              ) : (
                <button
                  className="danger"
                  aria-label={`Disable ${a.username}`}
                  onClick={() => setConfirming(a.account_id)}
                >
                  Disable…
                </button>
              ),
          },
        ]}
      />
    </section>
  );
}
