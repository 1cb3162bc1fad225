// The audit log in words: when (clinic time), who (staff names), what happened, and to
// which patient record (the whole id, a click away from that record's access history);
// filters, sort, pages; the hash chain verified; a patient's access history.
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import type { components } from "../shared/api/schema";
import type { AuditPage, StoredAuditEvent } from "../shared/api/types";
import { useApp, useLoad } from "../shared/context";
import { DataTable, type Column } from "../shared/DataTable";
import { instantOf, moment } from "../shared/time";
import { Field, field, Select, Status, useAction } from "../shared/ui";
import { KNOWN_TYPES, typeLabel, whatHappened } from "./auditText";
import { useStaffNames, type StaffNames } from "./staff";

type SortField = components["schemas"]["SortField"];
const PAGE = 50;

function queryOf(filters: Record<string, string>) {
  const when = (name: string): string | undefined => (filters[name] ? instantOf(filters[name]) : undefined);
  return {
    recorded_from: when("recorded_from"),
    recorded_to: when("recorded_to"),
    account_id: filters.account_id || undefined,
    patient_id: filters.patient_id || undefined,
    action: (filters.action || undefined) as components["schemas"]["AuditAction"] | undefined,
    outcome: (filters.outcome || undefined) as components["schemas"]["AuditOutcome"] | undefined,
    type: (filters.type || undefined) as components["schemas"]["AuditType"] | undefined,
  };
}

export function Audit({ focus }: { focus: { patientId: string; n: number } }): ReactNode {
  const { session } = useApp();
  const staff = useStaffNames();
  const action = useAction();
  const history = useAction();
  const verify = useAction();
  const [filters, setFilters] = useState<Record<string, string>>({});
  const [sort, setSort] = useState<SortField>("seq");
  const [descending, setDescending] = useState(true);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<AuditPage | null>(null);
  const [patientHistory, setPatientHistory] = useState<{ patient: string; page: AuditPage } | null>(null);
  /** The record whose history is asked for (typed, or followed from an entry or a report). */
  const [asked, setAsked] = useState({ patientId: focus.patientId, n: 0 });
  const [seenFocus, setSeenFocus] = useState(focus.n);
  if (focus.n !== seenFocus) {
    // Followed from another screen (the break-glass report) while this one is open.
    setSeenFocus(focus.n);
    setAsked((x) => ({ patientId: focus.patientId, n: x.n + 1 }));
  }
  const historyRef = useRef<HTMLElement>(null);

  const load = useCallback(async () => {
    const query = queryOf(filters);
    setPage(
      await must(
        session.api.GET("/api/v1/audit/events", {
          params: { query: { ...query, sort, descending, offset, limit: PAGE } },
        }),
      ),
    );
  }, [session, filters, sort, descending, offset]);
  const { run } = action;
  useLoad(run, load);

  const { run: runHistory } = history;
  const showHistory = useCallback((patientId: string) => setAsked((a) => ({ patientId, n: a.n + 1 })), []);
  useEffect(() => {
    const patient = asked.patientId;
    if (!patient) return;
    void runHistory(async () => {
      const reply = await must(
        session.api.GET("/api/v1/audit/patients/{patient_id}", {
          params: { path: { patient_id: patient }, query: { limit: 200 } },
        }),
      );
      setPatientHistory({ patient, page: reply });
      historyRef.current?.scrollIntoView?.({ block: "start" });
    });
  }, [session, runHistory, asked.patientId, asked.n]);

  const header = (name: SortField, label: string): Pick<Column<StoredAuditEvent>, "header" | "th"> => ({
    th: { "aria-sort": sort === name ? (descending ? "descending" : "ascending") : undefined },
    header: (
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
    ),
  });

  return (
    <>
      <section aria-labelledby="audit-title">
        <h2 id="audit-title">Audit log</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const next: Record<string, string> = {};
            for (const name of [
              "recorded_from",
              "recorded_to",
              "account_id",
              "patient_id",
              "action",
              "outcome",
              "type",
            ]) {
              const value = field(form, name);
              if (value) next[name] = value;
            }
            setOffset(0);
            setFilters(next);
          }}
        >
          <Field label="From" name="recorded_from" type="datetime-local" action={action} hint="Clinic time" />
          <Field label="To" name="recorded_to" type="datetime-local" action={action} />
          <Select label="Staff member" name="account_id" defaultValue="" action={action}>
            <option value="">anyone</option>
            {staff.accounts.map((s) => (
              <option key={s.account_id} value={s.account_id}>
                {s.display_name} ({s.role})
              </option>
            ))}
          </Select>
          <Field label="Patient id" name="patient_id" action={action} spellCheck={false} />
          <Select label="Action" name="action" defaultValue="" action={action}>
            <option value="">any</option>
            <option value="C">create</option>
            <option value="R">read</option>
            <option value="U">update</option>
            <option value="D">delete</option>
            <option value="E">execute</option>
          </Select>
          <Select label="Outcome" name="outcome" defaultValue="" action={action}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="refused">refused</option>
            <option value="failure">failure</option>
          </Select>
          <Select label="What happened" name="type" defaultValue="" action={action}>
            <option value="">anything</option>
            {KNOWN_TYPES.map((t) => (
              <option key={t} value={t}>
                {typeLabel(t)}
              </option>
            ))}
          </Select>
          <button disabled={action.busy}>Apply filters</button>
        </form>
        <p>
          <button
            className="secondary"
            disabled={verify.busy}
            onClick={() =>
              void verify.run(async () => {
                const v = await must(session.api.GET("/api/v1/audit/verify"));
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
        {page && (
          <p>
            {page.total} entries
            {page.total > PAGE ? `, showing ${offset + 1}–${Math.min(offset + PAGE, page.total)}` : ""}.{" "}
            <button className="secondary" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
              Previous
            </button>{" "}
            <button
              className="secondary"
              disabled={offset + PAGE >= page.total}
              onClick={() => setOffset(offset + PAGE)}
            >
              Next
            </button>
          </p>
        )}
        <AuditTable
          label="Audit entries"
          rows={page?.entries ?? null}
          error={page === null ? action.error : undefined}
          staff={staff}
          onPatient={showHistory}
          header={header}
        />
      </section>
      <section aria-labelledby="history-title" ref={historyRef}>
        <h2 id="history-title">Patient access history</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            showHistory(field(e.currentTarget, "history_patient"));
          }}
        >
          <Field
            key={`${asked.patientId}:${asked.n}`}
            label="Patient id"
            name="history_patient"
            shows="patient_id"
            required
            spellCheck={false}
            action={history}
            defaultValue={asked.patientId}
          />
          <button disabled={history.busy}>Show who accessed this record</button>
        </form>
        <Status action={history} />
        {patientHistory && (
          <>
            <p data-testid="history-summary">
              {patientHistory.page.total} {patientHistory.page.total === 1 ? "access" : "accesses"} to the record of
              patient <code>{patientHistory.patient}</code>.
            </p>
            <AuditTable
              label="Accesses to this record"
              rows={patientHistory.page.entries}
              staff={staff}
              onPatient={showHistory}
            />
          </>
        )}
      </section>
    </>
  );
}

function AuditTable(props: {
  label: string;
  rows: StoredAuditEvent[] | null;
  error?: string;
  staff: StaffNames;
  onPatient: (patientId: string) => void;
  header?: (name: SortField, label: string) => Pick<Column<StoredAuditEvent>, "header" | "th">;
}): ReactNode {
  const h = props.header ?? ((_: SortField, label: string) => ({ header: label }));
  const who = ({ event }: StoredAuditEvent): string =>
    event.agent.account_id
      ? props.staff.name(event.agent.account_id)
      : event.agent.address
        ? `someone at ${event.agent.address}`
        : "the system";
  return (
    <DataTable
      label={props.label}
      rows={props.rows}
      error={props.error}
      rowKey={(e) => String(e.seq)}
      empty="No entries."
      columns={[
        { ...h("seq", "#"), cell: (e) => e.seq },
        { ...h("recorded", "When"), cell: (e) => moment(e.event.recorded) },
        { ...h("account_id", "Who"), cell: who },
        {
          ...h("type", "What happened"),
          className: (e) => (e.event.outcome === "success" ? "" : "warn"),
          cell: ({ event }) => (
            <>
              {whatHappened(event)}
              {event.detail ? <div className="hint">{event.detail}</div> : null}
            </>
          ),
        },
        {
          ...h("patient_id", "Patient record"),
          cell: ({ event }) =>
            event.patient_id ? (
              <button
                className="link id"
                onClick={() => props.onPatient(event.patient_id as string)}
                aria-label={`Access history of patient ${event.patient_id}`}
              >
                {event.patient_id}
              </button>
            ) : (
              ""
            ),
        },
      ]}
    />
  );
}
