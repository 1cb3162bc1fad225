// A physician's working time: hours per weekday (several periods a day if need be), weekly
// breaks (lunch), absences (holidays, leave, training: whole days or from one time to
// another) and days off. Each change says which booked appointments no longer fit.
import { useCallback, useState, type ReactNode } from "react";

import { must } from "../shared/api/client";
import type { AbsenceKind, Availability, NewAbsence, Weekday, WorkingPeriod } from "../shared/api/types";
import { DirectoryError, PhysicianOptions, useApp, useDirectory, useLive, useLoad } from "../shared/context";
import { dayLabel, instantOf, when } from "../shared/time";
import { Field, field, Select, Status, useAction, useProblem, type Action } from "../shared/ui";
import { writeOnce } from "../shared/submit";

const WEEKDAYS: Weekday[] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const KINDS: AbsenceKind[] = ["holiday", "leave", "training", "other"];

function title(day: string): string {
  return day.charAt(0).toUpperCase() + day.slice(1);
}

function affectedText(reply: Availability): string {
  const n = reply.affected.length;
  if (n === 0) return "";
  const list = reply.affected.map((a) => when(a.start)).join(", ");
  const what = n === 1 ? "One booked appointment no longer fits" : `${n} booked appointments no longer fit`;
  return ` ${what} (${list}): rebook or cancel ${n === 1 ? "it" : "them"}.`;
}

export function WorkingTime(props: { physician: string; onPhysician: (id: string) => void }): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session, "physician");
  const physicians = directory.staff;
  const load = useAction();
  const [availability, setAvailability] = useState<Availability | null>(null);
  const doctor = props.physician || physicians[0]?.account_id || "";
  const doctorName = physicians.find((p) => p.account_id === doctor)?.display_name ?? "";

  const read = useCallback(async () => {
    if (!doctor) return;
    setAvailability(
      await must(
        session.api.GET("/api/v1/physicians/{physician_id}/availability", {
          params: { path: { physician_id: doctor } },
        }),
      ),
    );
  }, [session, doctor]);
  const { run } = load;
  useLoad(run, read);
  useLive(
    ["scheduling.availability."],
    useCallback(
      (event) => {
        if (event.physician_id === doctor) void read().catch(() => undefined);
      },
      [doctor, read],
    ),
  );

  return (
    <>
      <section aria-labelledby="working-time-title">
        <h2 id="working-time-title">Working time</h2>
        <Select label="Physician" name="physician" value={doctor} onChange={(e) => props.onPhysician(e.target.value)}>
          <PhysicianOptions directory={directory} />
        </Select>
        <DirectoryError directory={directory} />
        <p className="hint">
          Wall-clock times in the clinic's time zone{availability ? ` (${availability.time_zone})` : ""}.
        </p>
        <Status action={load} />
        {doctor && availability?.physician_id !== doctor && !load.error && (
          <p className="busy" role="status">
            Loading the working time…
          </p>
        )}
      </section>
      {availability && availability.physician_id === doctor && (
        <>
          <Periods
            key={`hours-${doctor}`}
            kind="hours"
            physicianId={doctor}
            name={doctorName}
            periods={availability.weekly}
            onSaved={setAvailability}
          />
          <Periods
            key={`breaks-${doctor}`}
            kind="breaks"
            physicianId={doctor}
            name={doctorName}
            periods={availability.breaks}
            onSaved={setAvailability}
          />
          <Absences physicianId={doctor} availability={availability} onSaved={setAvailability} />
        </>
      )}
    </>
  );
}

interface Row {
  start: string;
  end: string;
}

function Periods(props: {
  kind: "hours" | "breaks";
  physicianId: string;
  name: string;
  periods: WorkingPeriod[];
  onSaved: (a: Availability) => void;
}): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const hours = props.kind === "hours";
  const [rows, setRows] = useState<Record<Weekday, Row[]>>(() => {
    const by = Object.fromEntries(WEEKDAYS.map((d) => [d, [] as Row[]])) as Record<Weekday, Row[]>;
    for (const p of props.periods) by[p.weekday].push({ start: p.start, end: p.end });
    return by;
  });
  const set = (day: Weekday, list: Row[]): void => {
    setRows({ ...rows, [day]: list });
    action.clear();
  };
  /** Changes the `i`th period of `day`. */
  const edit = (day: Weekday, i: number, change: Partial<Row>): void =>
    set(
      day,
      rows[day].map((x, j) => (j === i ? { ...x, ...change } : x)),
    );
  /** What a screen reader says for a period's start or end: "Monday break from (2)". */
  const boundLabel = (day: Weekday, i: number, bound: "from" | "until"): string =>
    `${title(day)} ${hours ? "" : "break "}${bound}${rows[day].length > 1 ? ` (${i + 1})` : ""}`;
  const label = hours ? "Working hours" : "Breaks";
  const id = `${props.kind}-title`;
  const problem = useProblem(action, hours ? "weekly" : "breaks");
  return (
    <section aria-labelledby={id}>
      <h2 id={id}>{label}</h2>
      <p className="hint">
        {hours
          ? "Each weekday's hours; for work past midnight end at 24:00 and go on from 00:00 the next day."
          : "Taken out of the working hours every week, e.g. lunch."}
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const periods = WEEKDAYS.flatMap((weekday) =>
            rows[weekday].map((r) => ({ weekday, start: r.start, end: r.end })),
          );
          void action.run(async () => {
            const path = { params: { path: { physician_id: props.physicianId } } };
            const reply = hours
              ? await writeOnce(
                  "/api/v1/physicians/{physician_id}/working-hours",
                  {
                    ...path,
                    body: { weekly: periods },
                  },
                  (o) => must(session.api.PUT("/api/v1/physicians/{physician_id}/working-hours", o)),
                )
              : await writeOnce(
                  "/api/v1/physicians/{physician_id}/breaks",
                  { ...path, body: { breaks: periods } },
                  (o) => must(session.api.PUT("/api/v1/physicians/{physician_id}/breaks", o)),
                );
            props.onSaved(reply);
            return `${label} saved.${affectedText(reply)}`;
          });
        }}
      >
        <div className="scroll wide">
          <table className="periods" aria-label={label}>
            <tbody>
              {WEEKDAYS.map((day, index) => (
                <tr key={day}>
                  <th scope="row">{title(day)}</th>
                  <td>
                    {rows[day].length === 0 && <span className="hint">{hours ? "not working" : "no break"}</span>}
                    {rows[day].map((r, i) => (
                      <span key={i} className="period">
                        <label>
                          <span className="sr-only">{boundLabel(day, i, "from")}</span>
                          <input
                            type="time"
                            required
                            value={r.start}
                            onChange={(e) => edit(day, i, { start: e.target.value })}
                          />
                        </label>
                        –
                        <label>
                          <span className="sr-only">{boundLabel(day, i, "until")}</span>
                          <input
                            type="text"
                            inputMode="numeric"
                            pattern="([01][0-9]|2[0-3]):[0-5][0-9]|24:00"
                            placeholder="HH:MM"
                            size={5}
                            required
                            value={r.end}
                            onChange={(e) => edit(day, i, { end: e.target.value })}
                          />
                        </label>
                        <button
                          type="button"
                          className="link"
                          aria-label={`Remove ${title(day)} ${r.start}–${r.end}`}
                          onClick={() =>
                            set(
                              day,
                              rows[day].filter((_, j) => j !== i),
                            )
                          }
                        >
                          ×
                        </button>
                      </span>
                    ))}
                  </td>
                  <td>
                    <button
                      type="button"
                      className="secondary"
                      aria-label={`Add ${hours ? "hours" : "a break"} on ${title(day)}`}
                      onClick={() =>
                        set(day, [
                          ...rows[day],
                          hours ? { start: "08:00", end: "18:00" } : { start: "12:30", end: "13:30" },
                        ])
                      }
                    >
                      Add
                    </button>
                    {index === 0 && rows.monday.length > 0 && (
                      <button
                        type="button"
                        className="link"
                        onClick={() => {
                          setRows({
                            ...rows,
                            ...Object.fromEntries(
                              WEEKDAYS.slice(1, 5).map((d) => [d, rows.monday.map((r) => ({ ...r }))]),
                            ),
                          });
                          action.clear();
                        }}
                      >
                        Same Tuesday to Friday
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {problem && (
          <p className="field-error" role="alert">
            {problem}
          </p>
        )}
        <button disabled={action.busy}>{hours ? "Save working hours" : "Save breaks"}</button>
      </form>
      <Status action={action} />
    </section>
  );
}

function Absences(props: {
  physicianId: string;
  availability: Availability;
  onSaved: (a: Availability) => void;
}): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const daysOff = useAction();
  const [byTime, setByTime] = useState(false);
  const { availability } = props;
  const path = { params: { path: { physician_id: props.physicianId } } };
  const changeAbsences = (add: NewAbsence[], remove: string[]): Promise<Availability> =>
    writeOnce("/api/v1/physicians/{physician_id}/absences", { ...path, body: { add, remove } }, (o) =>
      must(session.api.POST("/api/v1/physicians/{physician_id}/absences", o)),
    );
  const changeDaysOff = (add: string[], remove: string[]): Promise<Availability> =>
    writeOnce("/api/v1/physicians/{physician_id}/days-off", { ...path, body: { add, remove } }, (o) =>
      must(session.api.POST("/api/v1/physicians/{physician_id}/days-off", o)),
    );

  const change = (act: Action, body: () => Promise<Availability>, done: string): void =>
    void act.run(async () => {
      const reply = await body();
      props.onSaved(reply);
      return `${done}${affectedText(reply)}`;
    });

  return (
    <section aria-labelledby="absences-title">
      <h2 id="absences-title">Absences and days off</h2>
      <Planned
        label="Absences"
        none="No absence planned."
        items={availability.absences}
        itemKey={(a) => a.absence_id}
        show={(a) => (
          <>
            <strong>{a.kind}</strong>{" "}
            {a.first_day
              ? a.last_day && a.last_day !== a.first_day
                ? `${dayLabel(a.first_day)} to ${dayLabel(a.last_day)}`
                : dayLabel(a.first_day)
              : `${when(a.start)} to ${when(a.end)}`}
          </>
        )}
        onRemove={(a) => change(action, () => changeAbsences([], [a.absence_id]), "Absence removed.")}
      />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const kind = field(form, "kind") as AbsenceKind;
          const absence = byTime
            ? { kind, start: instantOf(field(form, "absence_start")), end: instantOf(field(form, "absence_end")) }
            : { kind, first_day: field(form, "first_day"), last_day: field(form, "last_day") || null };
          change(action, () => changeAbsences([absence], []), "Absence added.");
        }}
      >
        <Select label="Kind of absence" name="kind" defaultValue="holiday" action={action}>
          {KINDS.map((k) => (
            <option key={k} value={k}>
              {k}
            </option>
          ))}
        </Select>
        <label className="inline">
          <input type="checkbox" checked={byTime} onChange={(e) => setByTime(e.target.checked)} /> Part of a day (from a
          time to a time)
        </label>
        {byTime ? (
          <>
            <Field label="From" name="absence_start" shows="start" type="datetime-local" required action={action} />
            <Field label="Until" name="absence_end" shows="end" type="datetime-local" required action={action} />
          </>
        ) : (
          <>
            <Field label="First day" name="first_day" type="date" required action={action} />
            <Field label="Last day (if longer)" name="last_day" type="date" action={action} />
          </>
        )}
        <button disabled={action.busy}>Add absence</button>
      </form>
      <Status action={action} />
      <h3>Days off</h3>
      <Planned
        label="Days off"
        none="No day off planned."
        items={availability.days_off}
        itemKey={(d) => d}
        show={dayLabel}
        onRemove={(d) => change(daysOff, () => changeDaysOff([], [d]), "Day off removed.")}
      />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const day = field(e.currentTarget, "day_off");
          change(daysOff, () => changeDaysOff([day], []), "Day off added.");
        }}
      >
        <Field label="Day off" name="day_off" shows="add" type="date" required action={daysOff} />
        <button disabled={daysOff.busy}>Add day off</button>
      </form>
      <Status action={daysOff} />
    </section>
  );
}

/** What is planned (absences, days off), each with a button that removes it. */
function Planned<T>(props: {
  label: string;
  none: string;
  items: T[];
  itemKey: (item: T) => string;
  show: (item: T) => ReactNode;
  onRemove: (item: T) => void;
}): ReactNode {
  return (
    <ul className="plain" aria-label={props.label}>
      {props.items.length === 0 && <li className="hint">{props.none}</li>}
      {props.items.map((item) => (
        <li key={props.itemKey(item)}>
          {props.show(item)}{" "}
          <button className="link" onClick={() => props.onRemove(item)}>
            Remove
          </button>
        </li>
      ))}
    </ul>
  );
}
