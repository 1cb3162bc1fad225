// The front desk's calendars: a physician's week (every appointment, cancelled ones and
// no-shows with their status and reason) and a day grid with the physician's working time
// where every free start is a button: book it, or move an appointment to it. Live: a
// colleague's booking, a change of hours, a check-in show at once (scheduling events), so
// a taken time is not offered. Refusals are the server's own words, in the clinic's time.
import { useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";

import { age } from "../shared/age";
import { must } from "../shared/api/client";
import type { Appointment, Calendar, PatientBrief, TimeRange } from "../shared/api/types";
import { holdsTime, statusText } from "../shared/appointments";
import { DirectoryError, PhysicianOptions, useApp, useDirectory, useLive, useNow, useLoad } from "../shared/context";
import type { LiveEvent } from "../shared/live";
import { fullName, usePatientNames } from "../shared/patients";
import { PatientSearch } from "../shared/PatientSearch";
import {
  addDays,
  clinicToday,
  clinicZone,
  clock,
  dayIn,
  dayLabel,
  longDay,
  mondayOf,
  when,
  weekDays,
} from "../shared/time";
import { Field, field, Select, Status, TextArea, useAction, type Action } from "../shared/ui";
import { idempotent, submitOnce, writeOnce } from "../shared/submit";
import { cellSummary, useRovingButtons, useRovingGrid } from "../shared/grid";

const LENGTHS = [10, 15, 20, 30, 45, 60];
const label = (p: PatientBrief): string => `${fullName(p)}, ${age(p.date_of_birth)} (${p.mrn})`;

interface Day {
  doctor: string;
  calendar: Calendar;
  slots: TimeRange[];
  day: string;
}

export function Booking(props: {
  patient: PatientBrief | null;
  onPatient: (p: PatientBrief | null) => void;
  physician: string;
  onPhysician: (id: string) => void;
  day: string;
  onDay: (day: string) => void;
}): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session, "physician");
  const physicians = directory.staff;
  const { day, onDay: setDay } = props;
  const [duration, setDuration] = useState(30);
  const [shown, setShown] = useState<Day | null>(null);
  const [chosen, setChosen] = useState<TimeRange | null>(null);
  const [moving, setMoving] = useState<Appointment | null>(null);
  const [cancelling, setCancelling] = useState<string | null>(null);
  const { names, learn } = usePatientNames(session, label);
  const now = useNow(30_000);
  const view = useAction();
  const book = useAction();
  const change = useAction();
  const doctor = props.physician || physicians[0]?.account_id || "";
  const doctorName = physicians.find((p) => p.account_id === doctor)?.display_name ?? "";
  const week = mondayOf(day);
  const today = clinicToday();
  const cell = useRovingGrid(7, Math.max(weekDays(week).indexOf(day), 0));

  /** The physician, day and length on screen now: a reply for another one is dropped. */
  const wanted = useRef("");
  useLayoutEffect(() => {
    wanted.current = `${doctor}:${day}:${duration}`;
  });
  const load = useCallback(async () => {
    if (!doctor) return;
    const path = { physician_id: doctor };
    const [calendar, free] = await Promise.all([
      must(
        session.api.GET("/api/v1/physicians/{physician_id}/calendar", {
          params: { path, query: { day: week, span: "week" } },
        }),
      ),
      day < today
        ? Promise.resolve({ slots: [] as TimeRange[] })
        : must(
            session.api.GET("/api/v1/physicians/{physician_id}/free-slots", {
              params: { path, query: { first_day: day, last_day: day, duration_minutes: duration, limit: 1000 } },
            }),
          ),
    ]);
    if (wanted.current !== `${doctor}:${day}:${duration}`) return; // answered late: another is on screen
    const now = Date.now();
    setShown({ calendar, slots: free.slots.filter((s) => new Date(s.start).getTime() > now), day, doctor });
    setChosen((c) => (c && free.slots.some((s) => s.start === c.start && s.end === c.end) ? c : null));
    await learn(calendar.appointments.map((a) => a.patient_id));
  }, [session, doctor, week, day, today, duration, learn]);

  const { run } = view;
  useLoad(run, load);
  // A colleague booked, moved, cancelled, checked in, or the working time changed.
  useLive(
    ["scheduling."],
    useCallback(
      (event: LiveEvent) => {
        if (event.physician_id === doctor) void load().catch(() => undefined);
      },
      [doctor, load],
    ),
  );

  // Only the week and physician asked for: while another one loads, or if it failed, the
  // status says so and no other week is shown as if it were this one.
  const current = shown !== null && shown.doctor === doctor && mondayOf(shown.day) === week;
  const calendar = current ? shown.calendar : null;
  const appointments = calendar?.appointments ?? [];
  const toDay = (d: string): void => {
    setDay(d);
    setChosen(null);
  };

  /** After a refusal (a colleague took the time meanwhile): what is free now. */
  const refreshed = async (exc: unknown): Promise<never> => {
    await load().catch(() => undefined);
    throw exc;
  };

  const pick = (slot: TimeRange): void => {
    if (!moving) {
      setChosen(slot);
      book.clear();
      return;
    }
    const target = moving;
    void change.run(async () => {
      await writeOnce(
        "/api/v1/appointments/{appointment_id}/reschedule",
        {
          params: { path: { appointment_id: target.appointment_id } },
          body: { start: slot.start, end: slot.end },
        },
        (o) => must(session.api.POST("/api/v1/appointments/{appointment_id}/reschedule", o)),
      ).catch(refreshed);
      setMoving(null);
      await load();
      return `Appointment moved to ${when(slot.start)}.`;
    });
  };

  return (
    <>
      <section aria-labelledby="calendar-title">
        <h2 id="calendar-title">Physicians' calendars</h2>
        <div className="toolbar">
          <Select
            label="Physician"
            name="physician"
            value={doctor}
            onChange={(e) => {
              props.onPhysician(e.target.value);
              setChosen(null);
              setMoving(null);
            }}
          >
            <PhysicianOptions directory={directory} />
          </Select>
          <DirectoryError directory={directory} />
          <Field
            label="Day"
            name="day"
            type="date"
            value={day}
            onChange={(e) => e.target.value && toDay(e.target.value)}
          />
          <div className="buttons" role="group" aria-label="Move in the calendar">
            <button className="secondary" onClick={() => toDay(addDays(day, -7))}>
              Previous week
            </button>
            <button className="secondary" onClick={() => toDay(addDays(day, -1))}>
              Previous day
            </button>
            <button className="secondary" onClick={() => toDay(today)} disabled={day === today}>
              Today
            </button>
            <button className="secondary" onClick={() => toDay(addDays(day, 1))}>
              Next day
            </button>
            <button className="secondary" onClick={() => toDay(addDays(day, 7))}>
              Next week
            </button>
          </div>
        </div>
        <Status action={view} busyText="Loading the calendar…" />
        <p className="hint">Times in the clinic's time zone ({clinicZone()}).</p>
        {calendar && (
          <div role="grid" aria-label="Week view" aria-describedby="desk-week-keys">
            <p id="desk-week-keys" className="sr-only">
              Arrow keys move between days; Enter shows the day's free times; Tab reaches the day's bookings.
            </p>
            <div role="row" className="week">
              {weekDays(week).map((d, index) => {
                const items = appointments.filter((a) => dayIn(new Date(a.start)) === d);
                const away = calendar.absences.filter(
                  (x) => dayIn(new Date(x.start)) <= d && d <= dayIn(new Date(new Date(x.end).getTime() - 1)),
                );
                const off = calendar.days_off.includes(d);
                return (
                  <div
                    key={d}
                    {...cell(index)}
                    aria-selected={d === day}
                    className={["day", d === today ? "today" : "", d === day ? "chosen" : ""].join(" ").trim()}
                  >
                    <button
                      className="link"
                      aria-pressed={d === day}
                      onClick={() => toDay(d)}
                      aria-label={`Free times on ${dayLabel(d)}`}
                    >
                      <strong>{dayLabel(d)}</strong>
                    </button>
                    <span className="sr-only">: {cellSummary(items.length)}:</span>
                    {off && <p className="hint">day off</p>}
                    {away.map((x) => (
                      <p key={x.absence_id} className="hint">
                        {x.kind}
                        {x.first_day ? "" : ` ${clock(x.start)}–${clock(x.end)}`}
                      </p>
                    ))}
                    {items.length === 0 && !off && away.length === 0 && <p className="hint">—</p>}
                    {items.map((a) => (
                      <AppointmentCard
                        key={a.appointment_id}
                        appointment={a}
                        name={names[a.patient_id]}
                        future={new Date(a.start).getTime() > now}
                        moving={moving?.appointment_id === a.appointment_id}
                        onMove={() => {
                          setMoving(moving?.appointment_id === a.appointment_id ? null : a);
                          setChosen(null);
                        }}
                        cancelling={cancelling === a.appointment_id}
                        onCancelling={(on) => setCancelling(on ? a.appointment_id : null)}
                        change={change}
                        onCancel={async (reason) => {
                          await writeOnce(
                            "/api/v1/appointments/{appointment_id}/cancel",
                            {
                              params: { path: { appointment_id: a.appointment_id } },
                              body: { reason },
                            },
                            (o) => must(session.api.POST("/api/v1/appointments/{appointment_id}/cancel", o)),
                          );
                          setCancelling(null);
                          await load();
                          return "Appointment cancelled.";
                        }}
                      />
                    ))}
                  </div>
                );
              })}
            </div>
          </div>
        )}
        <Status action={change} />
      </section>
      <section aria-labelledby="slots-title">
        <h2 id="slots-title">
          {moving ? `Move the appointment of ${when(moving.start)} to…` : `Free times on ${longDay(day)}`}
        </h2>
        <div className="toolbar">
          <Select
            label="Length"
            name="duration"
            value={String(duration)}
            onChange={(e) => setDuration(Number(e.target.value))}
          >
            {LENGTHS.map((m) => (
              <option key={m} value={m}>
                {m} minutes
              </option>
            ))}
          </Select>
          {moving && (
            <button className="secondary" onClick={() => setMoving(null)}>
              Stop rescheduling
            </button>
          )}
        </div>
        {!doctor ? null : shown && shown.day === day && shown.doctor === doctor ? (
          <DayGrid
            day={day}
            today={today}
            shown={shown}
            doctorName={doctorName}
            chosen={chosen}
            names={names}
            onPick={pick}
            busy={change.busy}
          />
        ) : view.error ? (
          <p className="error">This day could not be loaded: see the message above.</p>
        ) : (
          <p className="busy" role="status">
            Loading the day…
          </p>
        )}
        {!moving && (
          <BookForm
            action={book}
            patient={props.patient}
            onPatient={props.onPatient}
            slot={chosen}
            onBook={async (reason) => {
              const patient = props.patient;
              if (!patient) throw new Error("Choose the patient first (search below, or under Patients).");
              if (!chosen) throw new Error("Choose one of the free times above.");
              const body = {
                patient_id: patient.patient_id,
                physician_id: doctor,
                start: chosen.start,
                end: chosen.end,
                reason,
              };
              // One booking, one key: a double click or a retry books once.
              await submitOnce(
                "booking",
                body,
                () => body,
                (b, key) => must(session.api.POST("/api/v1/appointments", { body: b, headers: idempotent(key) })),
              ).catch(refreshed);
              const at = when(chosen.start);
              setChosen(null);
              await load();
              return `Booked ${fullName(patient)} with ${doctorName} on ${at}.`;
            }}
          />
        )}
      </section>
    </>
  );
}

function AppointmentCard(props: {
  appointment: Appointment;
  name: string | undefined;
  /** Still to come (it can be moved or cancelled). */
  future: boolean;
  moving: boolean;
  onMove: () => void;
  cancelling: boolean;
  onCancelling: (on: boolean) => void;
  change: Action;
  onCancel: (reason: string) => Promise<string>;
}): ReactNode {
  const a = props.appointment;
  const { future } = props;
  return (
    <div
      className={["appt", props.moving ? "moving" : "", holdsTime(a) ? "" : "gone"].join(" ").trim()}
      data-testid="appointment"
      data-status={a.status}
    >
      <div>
        {clock(a.start)}–{clock(a.end)} {a.status !== "booked" && <span className="tag">{statusText(a)}</span>}
      </div>
      <div>{props.name ?? <code>{a.patient_id}</code>}</div>
      {a.reason && <div className="hint">{a.reason}</div>}
      {a.status === "booked" && future && (
        <div className="buttons">
          <button className="link" onClick={props.onMove}>
            {props.moving ? "Keep time" : "Reschedule"}
          </button>
          <button className="link" onClick={() => props.onCancelling(true)}>
            Cancel
          </button>
        </div>
      )}
      {props.cancelling && (
        <form
          className="stack"
          onSubmit={(e) => {
            e.preventDefault();
            const reason = field(e.currentTarget, "reason");
            void props.change.run(() => props.onCancel(reason));
          }}
        >
          <Field label="Reason for cancelling" name="reason" required maxLength={500} action={props.change} />
          <button className="danger">Cancel appointment</button>
          <button type="button" className="secondary" onClick={() => props.onCancelling(false)}>
            Keep it
          </button>
        </form>
      )}
    </div>
  );
}

/** One day of a physician: their working time, and every free start in time order with
 * the appointments in between. */
function DayGrid(props: {
  day: string;
  today: string;
  shown: Day;
  doctorName: string;
  chosen: TimeRange | null;
  names: Record<string, string>;
  onPick: (slot: TimeRange) => void;
  busy: boolean;
}): ReactNode {
  const { day, shown } = props;
  const working = shown.calendar.working.filter(
    (w) => dayIn(new Date(w.start)) === day || dayIn(new Date(w.end)) === day,
  );
  const taken = shown.calendar.appointments.filter((a) => holdsTime(a) && dayIn(new Date(a.start)) === day);
  const absent = shown.calendar.absences.filter(
    (a) => dayIn(new Date(a.start)) <= day && day <= dayIn(new Date(new Date(a.end).getTime() - 1)),
  );
  const items = [
    ...shown.slots.map((s) => ({ at: s.start, slot: s as TimeRange | null, appointment: null as Appointment | null })),
    ...taken.map((a) => ({ at: a.start, slot: null, appointment: a })),
  ].sort((x, y) => x.at.localeCompare(y.at));
  const who = props.doctorName || "The physician";
  const roving = useRovingButtons();
  return (
    <>
      <p>
        {working.length
          ? `${who} works ${working.map((w) => `${clock(w.start)}–${clock(w.end)}`).join(", ")} on this day.`
          : shown.calendar.days_off.includes(day)
            ? `${who} has a day off.`
            : `${who} does not work on this day.`}
        {absent
          .map((a) =>
            a.first_day ? ` Away all day (${a.kind}).` : ` Away (${a.kind}) ${when(a.start)}–${clock(a.end)}.`,
          )
          .join("")}
      </p>
      {day < props.today ? (
        <p>This day is over: choose today or a later day.</p>
      ) : shown.slots.length === 0 ? (
        <p>No free time {working.length ? "is left " : ""}on this day. Try another day.</p>
      ) : null}
      {items.length > 0 && (
        <div
          className="day-grid"
          role="group"
          aria-label={`Free times on ${dayLabel(day)}`}
          aria-describedby="free-times-keys"
          {...roving}
        >
          <span id="free-times-keys" className="sr-only">
            Arrow keys move between the free times; Enter chooses one.
          </span>
          {items.map((item) =>
            item.slot ? (
              <button
                key={`free-${item.at}`}
                className={props.chosen?.start === item.slot.start ? "slot selected" : "slot secondary"}
                aria-pressed={props.chosen?.start === item.slot.start}
                disabled={props.busy}
                onClick={() => props.onPick(item.slot as TimeRange)}
                title={`${when(item.slot.start)}–${clock(item.slot.end)}`}
              >
                {clock(item.slot.start)}
              </button>
            ) : item.appointment ? (
              <span key={`taken-${item.appointment.appointment_id}`} className="slot taken">
                {clock(item.appointment.start)}–{clock(item.appointment.end)}{" "}
                {props.names[item.appointment.patient_id]?.split(",")[0] ?? "booked"}
              </span>
            ) : null,
          )}
        </div>
      )}
    </>
  );
}

function BookForm(props: {
  action: Action;
  patient: PatientBrief | null;
  onPatient: (p: PatientBrief | null) => void;
  slot: TimeRange | null;
  onBook: (reason: string) => Promise<string>;
}): ReactNode {
  const [reason, setReason] = useState("");
  const p = props.patient;
  const card = useRef<HTMLDivElement>(null);
  // The patient chosen (the search and its Choose button are gone): focus goes on to the
  // next step, the reason for visit, instead of falling back to the page.
  useEffect(() => {
    const on = document.activeElement;
    if (p && (on === null || on === document.body)) {
      card.current?.querySelector<HTMLElement>("textarea[name='reason']")?.focus();
    }
  }, [p]);
  return (
    <div className="card" role="region" aria-label="Book" ref={card}>
      <h3>Book</h3>
      <p>
        Patient:{" "}
        {p ? (
          <strong>
            {fullName(p)} ({p.mrn}, born {p.date_of_birth}, {age(p.date_of_birth)})
          </strong>
        ) : (
          "none chosen"
        )}
        {" · "}Time: {props.slot ? <strong>{when(props.slot.start)}</strong> : "choose a free time above"}
      </p>
      {!p && (
        <PatientSearch
          title="Find the patient"
          prefix="book"
          level={3}
          phone
          actions={(found) => (
            <button className="secondary" onClick={() => props.onPatient(found)}>
              Choose
            </button>
          )}
        />
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void props.action.run(async () => {
            const done = await props.onBook(reason.trim());
            setReason("");
            return done;
          });
        }}
      >
        <TextArea
          label="Reason for visit"
          name="reason"
          required
          maxLength={500}
          rows={2}
          action={props.action}
          value={reason}
          onChange={(e) => setReason(e.target.value)}
        />
        <div className="buttons">
          <button disabled={props.action.busy}>{props.action.busy ? "Booking…" : "Book appointment"}</button>
          {p && (
            <button type="button" className="secondary" onClick={() => props.onPatient(null)}>
              Another patient
            </button>
          )}
        </div>
      </form>
      <Status action={props.action} />
    </div>
  );
}
