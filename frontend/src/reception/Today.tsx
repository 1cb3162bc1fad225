// The front desk's day: today's appointments (clinic time) per physician, live, with
// check-in when the patient arrives and no-show once the time has come and they have not;
// visits in progress and done as the physicians start and finish them; cancelled ones and
// no-shows stay on the list with their status and reason.
import { useCallback, useLayoutEffect, useRef, useState, type ReactNode } from "react";

import { age } from "../shared/age";
import { must } from "../shared/api/client";
import type { Appointment, PatientBrief, Today as TodayList } from "../shared/api/types";
import { holdsTime, statusText } from "../shared/appointments";
import { useApp, useDirectory, useLive, useNow, useLoad } from "../shared/context";
import { DataTable } from "../shared/DataTable";
import { fullName, usePatientNames } from "../shared/patients";
import { clock, longDay, when } from "../shared/time";
import { Select, Status, useAction } from "../shared/ui";
import { writeOnce } from "../shared/submit";

const label = (p: PatientBrief): string => `${fullName(p)}, ${age(p.date_of_birth)} (${p.mrn})`;

export function Today(): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session, "physician");
  const load = useAction();
  const step = useAction();
  const [physician, setPhysician] = useState("");
  const [today, setToday] = useState<TodayList | null>(null);
  const { names, learn } = usePatientNames(session, label);
  /** The names as they are when a step is done (they may arrive while it is under way). */
  const namesNow = useRef(names);
  useLayoutEffect(() => {
    namesNow.current = names;
  });
  const now = useNow(5_000);

  const read = useCallback(async () => {
    const list = await must(
      session.api.GET("/api/v1/appointments/today", { params: { query: { physician_id: physician || undefined } } }),
    );
    setToday(list);
    await learn(list.appointments.map((a) => a.patient_id));
  }, [session, physician, learn]);
  const { run } = load;
  useLoad(run, read);
  useLive(
    ["scheduling.appointment."],
    useCallback(() => void read().catch(() => undefined), [read]),
  );

  const act = (a: Appointment, what: "check-in" | "no-show"): void =>
    void step.run(async () => {
      const path = { params: { path: { appointment_id: a.appointment_id } } };
      if (what === "check-in")
        await writeOnce("/api/v1/appointments/{appointment_id}/check-in", path, (o) =>
          must(session.api.POST("/api/v1/appointments/{appointment_id}/check-in", o)),
        );
      else
        await writeOnce("/api/v1/appointments/{appointment_id}/no-show", path, (o) =>
          must(session.api.POST("/api/v1/appointments/{appointment_id}/no-show", o)),
        );
      await read();
      const who = namesNow.current[a.patient_id]?.split(",")[0] ?? "The patient";
      return what === "check-in"
        ? `${who} checked in for ${clock(a.start)} with ${directory.name(a.physician_id)}.`
        : `${who} marked as a no-show for ${clock(a.start)}.`;
    });

  const byPhysician = new Map<string, Appointment[]>();
  for (const a of today?.appointments ?? [])
    byPhysician.set(a.physician_id, [...(byPhysician.get(a.physician_id) ?? []), a]);
  const shownPhysicians = physician ? [physician] : [...byPhysician.keys()];

  return (
    <section aria-labelledby="today-title">
      <h2 id="today-title">Today{today ? `, ${longDay(today.day)}` : ""}</h2>
      <div className="toolbar">
        <Select
          label="Physician"
          name="today_physician"
          value={physician}
          onChange={(e) => setPhysician(e.target.value)}
        >
          <option value="">All physicians</option>
          {directory.staff.map((p) => (
            <option key={p.account_id} value={p.account_id}>
              {p.display_name}
            </option>
          ))}
        </Select>
        <button className="secondary" onClick={() => void load.run(read)}>
          Refresh
        </button>
      </div>
      <Status action={load} />
      <Status action={step} />
      {today === null ? (
        !load.error && (
          <p className="busy" role="status">
            Loading today's appointments…
          </p>
        )
      ) : shownPhysicians.length === 0 ? (
        <p>No appointments today.</p>
      ) : (
        shownPhysicians.map((id) => {
          const rows = byPhysician.get(id) ?? [];
          const waiting = rows.filter((a) => a.status === "arrived").length;
          return (
            <div key={id} className="today-physician">
              <h3>
                {directory.name(id)}{" "}
                <small>
                  {rows.filter(holdsTime).length} appointments{waiting ? `, ${waiting} waiting` : ""}
                </small>
              </h3>
              <DataTable
                label={`Today with ${directory.name(id)}`}
                rows={rows}
                rowKey={(a) => a.appointment_id}
                empty="No appointments today."
                rowProps={(a) => ({ className: holdsTime(a) ? undefined : "gone", "data-patient": a.patient_id })}
                columns={[
                  { header: "Time", cell: (a) => `${clock(a.start)}–${clock(a.end)}` },
                  { header: "Patient", cell: (a) => names[a.patient_id] ?? <code>{a.patient_id}</code> },
                  { header: "Reason", cell: (a) => a.reason },
                  {
                    header: "Status",
                    cell: (a) => (
                      <>
                        <span data-testid="appointment-status">{statusText(a)}</span>
                        {a.arrived_at && a.status === "arrived" && (
                          <div className="hint">since {clock(a.arrived_at)}</div>
                        )}
                        {a.status === "no_show" && a.finished_at && (
                          <div className="hint">recorded {when(a.finished_at)}</div>
                        )}
                      </>
                    ),
                  },
                  {
                    header: "Actions",
                    cell: (a) => (
                      <div className="buttons">
                        {(a.status === "booked" || a.status === "no_show") && (
                          <button onClick={() => act(a, "check-in")} disabled={step.busy}>
                            Check in
                          </button>
                        )}
                        {a.status === "booked" && new Date(a.start).getTime() <= now && (
                          <button className="secondary" onClick={() => act(a, "no-show")} disabled={step.busy}>
                            No-show
                          </button>
                        )}
                      </div>
                    ),
                  },
                ]}
              />
            </div>
          );
        })
      )}
      {today?.truncated && (
        <p className="warn">More than 500 appointments today: choose one physician to see them all.</p>
      )}
    </section>
  );
}
