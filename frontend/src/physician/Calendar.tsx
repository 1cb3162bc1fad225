// The physician's own calendar, live: a day view (today: start and finish each visit) and
// a week view, previous / next, back to today, and any date from a date picker; patients
// named with their age; cancelled appointments and no-shows stay, with their status.
import { useCallback, useLayoutEffect, useRef, useState, type ReactNode } from "react";

import { age } from "../shared/age";
import { must } from "../shared/api/client";
import type { Appointment, Calendar, PatientBrief } from "../shared/api/types";
import { holdsTime, statusText } from "../shared/appointments";
import { useApp, useLive, useLoad } from "../shared/context";
import { DataTable } from "../shared/DataTable";
import { useKept } from "../shared/drafts";
import { fullName, usePatientNames } from "../shared/patients";
import { addDays, clinicToday, clock, dayIn, dayLabel, longDay, mondayOf, weekDays } from "../shared/time";
import { Status, useAction } from "../shared/ui";
import { writeOnce } from "../shared/submit";
import { cellSummary, useRovingGrid } from "../shared/grid";

type Span = "day" | "week";

const label = (p: PatientBrief): string => `${fullName(p)}, ${age(p.date_of_birth)}`;

export function MyCalendar({ onOpen }: { onOpen: (patientId: string) => void }): ReactNode {
  const { session, me } = useApp();
  const action = useAction();
  const step = useAction();
  const [view, setView] = useKept<{ span: Span; day: string | null }>("calendar:view", () => ({
    span: "day",
    day: null,
  }));
  const [calendar, setCalendar] = useState<Calendar | null>(null);
  /** The span and day the calendar shown is of: another one is not shown as if it were it. */
  const [showing, setShowing] = useState("");
  const { names, learn } = usePatientNames(session, label);
  const today = clinicToday();
  const day = view.day ?? today;
  const { span } = view;

  /** The span and day on screen now: a reply for another one (answered late) is dropped. */
  const wanted = useRef("");
  useLayoutEffect(() => {
    wanted.current = `${span}:${day}`;
  });
  const load = useCallback(async () => {
    const cal = await must(
      session.api.GET("/api/v1/physicians/{physician_id}/calendar", {
        params: { path: { physician_id: me.account_id }, query: { day, span } },
      }),
    );
    if (wanted.current !== `${span}:${day}`) return;
    setCalendar(cal);
    setShowing(`${span}:${day}`);
    await learn(cal.appointments.map((a) => a.patient_id));
  }, [session, me.account_id, day, span, learn]);
  const { run } = action;
  useLoad(run, load);
  // Appointment changes and changes of the working time, as they happen.
  useLive(
    ["scheduling."],
    useCallback(() => void load().catch(() => undefined), [load]),
  );

  const go = (next: Partial<{ span: Span; day: string | null }>): void => setView({ ...view, ...next });
  const stride = span === "day" ? 1 : 7;
  const monday = mondayOf(day);
  const cell = useRovingGrid(7, Math.max(weekDays(monday).indexOf(today), 0));
  const appointments = calendar?.appointments ?? [];
  const title =
    span === "day"
      ? day === today
        ? "Today"
        : longDay(day)
      : monday === mondayOf(today)
        ? "This week"
        : `Week of ${longDay(monday)}`;
  const who = (a: Appointment): ReactNode => names[a.patient_id] ?? <code>{a.patient_id}</code>;

  const visit = (a: Appointment, what: "start" | "finish"): void =>
    void step.run(async () => {
      const path = { params: { path: { appointment_id: a.appointment_id } } };
      if (what === "start")
        await writeOnce("/api/v1/appointments/{appointment_id}/start", path, (o) =>
          must(session.api.POST("/api/v1/appointments/{appointment_id}/start", o)),
        );
      else
        await writeOnce("/api/v1/appointments/{appointment_id}/finish", path, (o) =>
          must(session.api.POST("/api/v1/appointments/{appointment_id}/finish", o)),
        );
      await load();
      const name = names[a.patient_id] ?? "the patient";
      return what === "start" ? `Visit with ${name} started.` : `Visit with ${name} finished.`;
    });

  return (
    <section aria-labelledby="my-calendar-title">
      <h2 id="my-calendar-title">{title}</h2>
      <div className="toolbar">
        <div className="buttons" role="group" aria-label="Calendar view">
          <button
            className={span === "day" ? "" : "secondary"}
            aria-pressed={span === "day"}
            onClick={() => go({ span: "day" })}
          >
            Day
          </button>
          <button
            className={span === "week" ? "" : "secondary"}
            aria-pressed={span === "week"}
            onClick={() => go({ span: "week" })}
          >
            Week
          </button>
        </div>
        <div className="buttons" role="group" aria-label="Move in the calendar">
          <button className="secondary" onClick={() => go({ day: addDays(day, -stride) })}>
            {span === "day" ? "Previous day" : "Previous week"}
          </button>
          <button className="secondary" onClick={() => go({ day: null })} disabled={view.day === null || day === today}>
            Back to today
          </button>
          <button className="secondary" onClick={() => go({ day: addDays(day, stride) })}>
            {span === "day" ? "Next day" : "Next week"}
          </button>
        </div>
        <div className="field">
          <label htmlFor="calendar-date">Go to date</label>
          <input
            id="calendar-date"
            type="date"
            value={day}
            onChange={(e) => e.target.value && go({ day: e.target.value })}
          />
        </div>
        <button className="secondary" onClick={() => void action.run(load)}>
          Refresh
        </button>
      </div>
      <Status action={action} />
      <Status action={step} />
      {calendar === null || showing !== `${span}:${day}` ? (
        <p className="busy" role="status">
          Loading your calendar…
        </p>
      ) : (
        <>
          {span === "week" && (
            <div role="grid" aria-label="Week view" aria-describedby="week-keys">
              <p id="week-keys" className="sr-only">
                Arrow keys move between days; Enter opens the day.
              </p>
              <div role="row" className="week">
                {weekDays(monday).map((d, index) => {
                  const items = appointments.filter((a) => dayIn(new Date(a.start)) === d);
                  return (
                    <div key={d} {...cell(index)} className={d === today ? "day today" : "day"}>
                      <button className="link" onClick={() => go({ span: "day", day: d })}>
                        <span className="sr-only">Day view of </span>
                        <strong>{dayLabel(d)}</strong>
                      </button>
                      <span className="sr-only">: {cellSummary(items.length)}:</span>
                      {items.map((a) => (
                        <div key={a.appointment_id} className={holdsTime(a) ? "appt" : "appt gone"}>
                          {clock(a.start)} {names[a.patient_id] ?? ""}
                          {a.status !== "booked" && <span className="tag">{statusText(a)}</span>}
                          <div className="hint">{a.reason}</div>
                        </div>
                      ))}
                    </div>
                  );
                })}
              </div>
            </div>
          )}
          <DataTable
            label="Appointments"
            rows={appointments}
            rowKey={(a) => a.appointment_id}
            empty={`No appointments ${span === "day" ? "on this day" : "in this week"}.`}
            rowProps={(a) => ({ className: holdsTime(a) ? undefined : "gone" })}
            columns={[
              {
                header: "Time",
                cell: (a) => {
                  const on = span === "week" ? `${dayLabel(dayIn(new Date(a.start)))}, ` : "";
                  return `${on}${clock(a.start)}–${clock(a.end)}`;
                },
              },
              { header: "Patient", cell: who },
              { header: "Reason", cell: (a) => a.reason },
              { header: "Status", cell: (a) => <span data-testid="appointment-status">{statusText(a)}</span> },
              {
                header: "Actions",
                cell: (a) => (
                  <div className="buttons">
                    <button className="secondary" onClick={() => onOpen(a.patient_id)}>
                      Open chart
                    </button>
                    {(a.status === "booked" || a.status === "arrived") && dayIn(new Date(a.start)) <= today && (
                      <button onClick={() => visit(a, "start")} disabled={step.busy}>
                        Start visit
                      </button>
                    )}
                    {a.status === "in_progress" && (
                      <button onClick={() => visit(a, "finish")} disabled={step.busy}>
                        Finish visit
                      </button>
                    )}
                  </div>
                ),
              },
            ]}
          />
        </>
      )}
    </section>
  );
}
