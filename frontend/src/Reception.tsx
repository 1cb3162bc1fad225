// Receptionists: register and find patients, read demographics, and keep the physicians'
// calendars (week view, free-slot suggestions, book, reschedule, cancel, working hours).
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";

import { ApiError, call } from "./api";
import {
  addDays,
  CLINIC_ZONE_FALLBACK,
  clock,
  dayIn,
  dayLabel,
  fullName,
  learnClinicZone,
  mondayOf,
  searchPatients,
  useApp,
  useDirectory,
  weekDays,
  when,
  type Appointment,
  type Calendar,
  type PatientBrief,
} from "./shared";
import { Field, field, Loading, Select, Status, useAction, type Action } from "./ui";

export interface Demographics {
  given_name: string;
  family_name: string;
  date_of_birth: string;
  sex: string;
  phone?: string | null;
  email?: string | null;
  address?: { line1: string; line2?: string | null; postal_code: string; city: string; region?: string | null; country: string } | null;
  emergency_contact?: { name: string; relationship: string; phone: string } | null;
  insurance?: { company: string; member_id: string; valid_until: string } | null;
}
export interface Patient {
  patient_id: string;
  mrn: string;
  demographics: Demographics;
  version: number;
}
interface Duplicate {
  demographics: Demographics;
  existing: { patient_id: string; mrn: string }[];
}

export function Reception({ tab, go }: { tab: string; go: (tab: string) => void }): ReactNode {
  const [patient, setPatient] = useState<PatientBrief | null>(null);
  if (tab === "Patients")
    return (
      <Patients
        onBook={(p) => {
          setPatient(p);
          go("Calendar");
        }}
      />
    );
  return <Calendars patient={patient} onPatient={setPatient} />;
}

function Patients({ onBook }: { onBook: (patient: PatientBrief) => void }): ReactNode {
  const { session } = useApp();
  const register = useAction();
  const search = useAction();
  const show = useAction();
  const [duplicate, setDuplicate] = useState<Duplicate | null>(null);
  const [found, setFound] = useState<PatientBrief[] | null>(null);
  const [shown, setShown] = useState<Patient | null>(null);
  const [registered, setRegistered] = useState<Patient | null>(null);

  async function create(demographics: Demographics, confirm: boolean, form?: HTMLFormElement): Promise<string> {
    try {
      const written = await call<{ patient_id: string }>(session, "POST", "/api/v1/patients", {
        demographics,
        confirm_duplicate: confirm,
      });
      setDuplicate(null);
      form?.reset();
      const patient = await call<Patient>(session, "GET", `/api/v1/patients/${written.patient_id}`);
      setRegistered(patient);
      return `Registered ${fullName(patient.demographics)}: record number ${patient.mrn}.`;
    } catch (exc) {
      const details = exc instanceof ApiError ? (exc.details as { reason?: string; existing?: Duplicate["existing"] } | null) : null;
      if (exc instanceof ApiError && exc.status === 409 && details?.reason === "possible_duplicate") {
        setDuplicate({ demographics, existing: details.existing ?? [] });
        return "";
      }
      throw exc;
    }
  }

  return (
    <>
      <section aria-labelledby="register-patient-title">
        <h2 id="register-patient-title">Register a patient</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const demographics: Demographics = {
              given_name: field(form, "given_name"),
              family_name: field(form, "family_name"),
              date_of_birth: field(form, "date_of_birth"),
              sex: field(form, "sex"),
            };
            for (const optional of ["phone", "email"] as const) {
              if (field(form, optional)) demographics[optional] = field(form, optional);
            }
            if (field(form, "line1") || field(form, "city") || field(form, "postal_code")) {
              demographics.address = {
                line1: field(form, "line1"),
                postal_code: field(form, "postal_code"),
                city: field(form, "city"),
                country: field(form, "country").toUpperCase(),
              };
            }
            setRegistered(null);
            void register.run(() => create(demographics, false, form));
          }}
        >
          <Field label="Given name" name="given_name" action={register} required autoComplete="off" />
          <Field label="Family name" name="family_name" action={register} required autoComplete="off" />
          <Field label="Date of birth" name="date_of_birth" type="date" action={register} required />
          <Select label="Sex" name="sex" action={register} defaultValue="unknown">
            <option value="female">female</option>
            <option value="male">male</option>
            <option value="other">other</option>
            <option value="unknown">unknown</option>
          </Select>
          <Field label="Phone" name="phone" type="tel" action={register} autoComplete="off" />
          <Field label="Email" name="email" type="email" action={register} autoComplete="off" />
          <Field label="Address" name="line1" action={register} autoComplete="off" />
          <Field label="Postal code" name="postal_code" action={register} autoComplete="off" />
          <Field label="City" name="city" action={register} autoComplete="off" />
          <Field label="Country (2 letters)" name="country" action={register} maxLength={2} defaultValue="DE" />
          <button disabled={register.busy}>{register.busy ? "Registering…" : "Register patient"}</button>
        </form>
        <Status action={register} />
        {duplicate && (
          <div className="warning" role="alert" aria-label="Possible duplicate">
            <p>
              <strong>Possible duplicate:</strong> a patient named {fullName(duplicate.demographics)}, born{" "}
              {duplicate.demographics.date_of_birth}, is already registered (record{" "}
              {duplicate.existing.map((x) => x.mrn).join(", ")}). Use the existing record, unless this is a different person.
            </p>
            <button
              className="danger"
              disabled={register.busy}
              onClick={() => void register.run(() => create(duplicate.demographics, true))}
            >
              Different person: register anyway
            </button>{" "}
            <button className="secondary" onClick={() => setDuplicate(null)}>
              Cancel
            </button>
          </div>
        )}
        {registered && (
          <p>
            <button className="secondary" onClick={() => onBook(toBrief(registered))}>
              Book an appointment for {fullName(registered.demographics)}
            </button>
          </p>
        )}
      </section>
      <section aria-labelledby="find-title">
        <h2 id="find-title">Find a patient</h2>
        <p className="hint">Exact match: family name and date of birth, or phone, or record number.</p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            void search.run(async () => {
              const patients = await searchPatients(session, {
                family_name: field(form, "search_family_name"),
                date_of_birth: field(form, "search_date_of_birth"),
                phone: field(form, "search_phone"),
                mrn: field(form, "search_mrn"),
              });
              setFound(patients);
              return patients.length ? "" : "No patient matches exactly.";
            });
          }}
        >
          <Field label="Family name" name="search_family_name" action={search} autoComplete="off" />
          <Field label="Date of birth" name="search_date_of_birth" type="date" action={search} />
          <Field label="or phone" name="search_phone" type="tel" action={search} autoComplete="off" />
          <Field label="or record number" name="search_mrn" action={search} placeholder="MH-…" autoComplete="off" />
          <button disabled={search.busy}>{search.busy ? "Searching…" : "Search"}</button>
        </form>
        <Status action={search} />
        {found && found.length > 0 && (
          <div className="scroll">
            <table aria-label="Patients found">
              <thead>
                <tr>
                  <th scope="col">Record</th>
                  <th scope="col">Name</th>
                  <th scope="col">Born</th>
                  <th scope="col">Sex</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {found.map((p) => (
                  <tr key={p.patient_id}>
                    <td>{p.mrn}</td>
                    <td>{fullName(p)}</td>
                    <td>{p.date_of_birth}</td>
                    <td>{p.sex}</td>
                    <td>
                      <button
                        className="secondary"
                        onClick={() =>
                          void show.run(async () => setShown(await call<Patient>(session, "GET", `/api/v1/patients/${p.patient_id}`)))
                        }
                      >
                        Demographics
                      </button>{" "}
                      <button className="secondary" onClick={() => onBook(p)}>
                        Book
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Status action={show} />
        {shown && <DemographicsCard patient={shown} onClose={() => setShown(null)} />}
      </section>
    </>
  );
}

function toBrief(p: Patient): PatientBrief {
  return { patient_id: p.patient_id, mrn: p.mrn, ...p.demographics };
}

export function DemographicsCard(props: { patient: Patient; onClose?: () => void; titled?: boolean }): ReactNode {
  const { patient, onClose } = props;
  const d = patient.demographics;
  return (
    <div className="card" role="region" aria-label="Demographics">
      {props.titled !== false && (
        <h3>
          {fullName(d)} <small>({patient.mrn})</small>
        </h3>
      )}
      <dl>
        <dt>Born</dt>
        <dd>{d.date_of_birth}</dd>
        <dt>Sex</dt>
        <dd>{d.sex}</dd>
        {d.phone && (
          <>
            <dt>Phone</dt>
            <dd>{d.phone}</dd>
          </>
        )}
        {d.email && (
          <>
            <dt>Email</dt>
            <dd>{d.email}</dd>
          </>
        )}
        {d.address && (
          <>
            <dt>Address</dt>
            <dd>
              {d.address.line1}
              {d.address.line2 ? `, ${d.address.line2}` : ""}, {d.address.postal_code} {d.address.city}, {d.address.country}
            </dd>
          </>
        )}
        {d.emergency_contact && (
          <>
            <dt>Emergency contact</dt>
            <dd>
              {d.emergency_contact.name} ({d.emergency_contact.relationship}), {d.emergency_contact.phone}
            </dd>
          </>
        )}
        {d.insurance && (
          <>
            <dt>Insurance</dt>
            <dd>
              {d.insurance.company} {d.insurance.member_id} (until {d.insurance.valid_until})
            </dd>
          </>
        )}
      </dl>
      {onClose && (
        <button className="secondary" onClick={onClose}>
          Close
        </button>
      )}
    </div>
  );
}

interface Slot {
  start: string;
  end: string;
}

const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

function Calendars({ patient, onPatient }: { patient: PatientBrief | null; onPatient: (p: PatientBrief | null) => void }): ReactNode {
  const { session } = useApp();
  const { staff: physicians } = useDirectory(session, "physician");
  const [physician, setPhysician] = useState("");
  const [zone, setZone] = useState(CLINIC_ZONE_FALLBACK);
  const [week, setWeek] = useState(() => mondayOf(dayIn(new Date(), CLINIC_ZONE_FALLBACK)));
  const [duration, setDuration] = useState(30);
  const [calendar, setCalendar] = useState<Calendar | null>(null);
  const [slots, setSlots] = useState<Slot[] | null>(null);
  const [chosen, setChosen] = useState<Slot | null>(null);
  const [moving, setMoving] = useState<Appointment | null>(null);
  const [cancelling, setCancelling] = useState<string | null>(null);
  const [names, setNames] = useState<Record<string, string>>({});
  const namesRef = useRef(names);
  namesRef.current = names;
  const view = useAction();
  const book = useAction();
  const change = useAction();
  const doctor = physician || physicians[0]?.account_id || "";
  const doctorName = physicians.find((p) => p.account_id === doctor)?.display_name ?? "";

  const load = useCallback(async () => {
    if (!doctor) return;
    const cal = await call<Calendar>(session, "GET", `/api/v1/physicians/${doctor}/calendar`, undefined, { day: week, span: "week" });
    setCalendar(cal);
    learnClinicZone(cal.time_zone);
    setZone(cal.time_zone);
    const today = dayIn(new Date(), cal.time_zone);
    const first = week < today ? today : week;
    const last = addDays(week, 6);
    if (first > last) {
      setSlots([]);
    } else {
      const free = await call<{ slots: Slot[]; time_zone: string }>(session, "GET", `/api/v1/physicians/${doctor}/free-slots`, undefined, {
        first_day: first,
        last_day: last,
        duration_minutes: duration,
        limit: 200,
      });
      const now = Date.now();
      setSlots(free.slots.filter((s) => new Date(s.start).getTime() > now));
    }
    // Names of this week's patients (kept in memory only, never in browser storage).
    const unknown = [...new Set(cal.appointments.map((a) => a.patient_id))].filter((id) => !namesRef.current[id]);
    for (const id of unknown) {
      try {
        const p = await call<Patient>(session, "GET", `/api/v1/patients/${id}`);
        setNames((n) => ({ ...n, [id]: `${fullName(p.demographics)} (${p.mrn})` }));
      } catch {
        break; // e.g. the patient-data bucket is empty: ids stay shown
      }
    }
  }, [session, doctor, week, duration]);

  useEffect(() => {
    setChosen(null);
    void view.run(load);
  }, [load]); // eslint-disable-line react-hooks/exhaustive-deps

  const days = weekDays(week);
  const booked = (calendar?.appointments ?? []).filter((a) => a.status !== "cancelled");

  return (
    <>
      <section aria-labelledby="calendar-title">
        <h2 id="calendar-title">Physicians' calendars</h2>
        <div className="toolbar">
          <Select label="Physician" name="physician" value={doctor} onChange={(e) => setPhysician(e.target.value)}>
            {physicians.length === 0 && <option value="">No physician registered yet</option>}
            {physicians.map((p) => (
              <option key={p.account_id} value={p.account_id}>
                {p.display_name}
                {p.specialty ? ` (${p.specialty})` : ""}
              </option>
            ))}
          </Select>
          <Field label="Week of" name="week" type="date" value={week} onChange={(e) => e.target.value && setWeek(mondayOf(e.target.value))} />
          <div className="buttons">
            <button className="secondary" onClick={() => setWeek(addDays(week, -7))} aria-label="Previous week">
              ‹ Previous
            </button>
            <button className="secondary" onClick={() => setWeek(mondayOf(dayIn(new Date(), zone)))}>
              This week
            </button>
            <button className="secondary" onClick={() => setWeek(addDays(week, 7))} aria-label="Next week">
              Next ›
            </button>
          </div>
        </div>
        <Status action={view} busyText="Loading the calendar…" />
        <p className="hint">Times in the clinic's time zone ({zone}).</p>
        <div className="week" role="grid" aria-label="Week view">
          {days.map((day) => {
            const today = day === dayIn(new Date(), zone);
            const items = booked.filter((a) => dayIn(new Date(a.start), zone) === day);
            return (
              <div key={day} role="gridcell" className={today ? "day today" : "day"} aria-label={dayLabel(day)}>
                <strong>{dayLabel(day)}</strong>
                {items.length === 0 && <p className="hint">—</p>}
                {items.map((a) => (
                  <div key={a.appointment_id} className={moving?.appointment_id === a.appointment_id ? "appt moving" : "appt"} data-testid="appointment">
                    <div>
                      {clock(a.start, zone)}–{clock(a.end, zone)} {a.status !== "booked" ? `(${a.status})` : ""}
                    </div>
                    <div>{names[a.patient_id] ?? <code>{a.patient_id.slice(0, 8)}</code>}</div>
                    {a.reason && <div className="hint">{a.reason}</div>}
                    {a.status === "booked" && (
                      <div className="buttons">
                        <button className="link" onClick={() => setMoving(moving?.appointment_id === a.appointment_id ? null : a)}>
                          {moving?.appointment_id === a.appointment_id ? "Keep time" : "Reschedule"}
                        </button>
                        <button className="link" onClick={() => setCancelling(a.appointment_id)}>
                          Cancel
                        </button>
                      </div>
                    )}
                    {cancelling === a.appointment_id && (
                      <form
                        className="stack"
                        onSubmit={(e) => {
                          e.preventDefault();
                          const reason = field(e.currentTarget, "cancel_reason");
                          void change.run(async () => {
                            await call(session, "POST", `/api/v1/appointments/${a.appointment_id}/cancel`, { reason });
                            setCancelling(null);
                            await load();
                            return "Appointment cancelled.";
                          });
                        }}
                      >
                        <Field label="Reason for cancelling" name="cancel_reason" required action={change} />
                        <button className="danger">Cancel appointment</button>
                        <button type="button" className="secondary" onClick={() => setCancelling(null)}>
                          Keep it
                        </button>
                      </form>
                    )}
                  </div>
                ))}
              </div>
            );
          })}
        </div>
        <Status action={change} />
      </section>
      <section aria-labelledby="slots-title">
        <h2 id="slots-title">{moving ? `Move the appointment of ${when(moving.start, zone)} to…` : "Free slots"}</h2>
        <div className="toolbar">
          <Select label="Length" name="duration" value={String(duration)} onChange={(e) => setDuration(Number(e.target.value))}>
            {[15, 20, 30, 45, 60].map((m) => (
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
        {slots === null ? (
          <Loading what="free slots" />
        ) : slots.length === 0 ? (
          <p>
            No free slot this week{doctorName ? ` for ${doctorName}` : ""}. Try another week, or set working hours below.
          </p>
        ) : (
          <div className="slot-days" role="group" aria-label="Free slot suggestions">
            {days
              .map((day) => ({ day, free: slots.filter((s) => dayIn(new Date(s.start), zone) === day) }))
              .filter(({ free }) => free.length > 0)
              .map(({ day, free }) => (
                <div key={day} className="slot-day">
                  <strong>{dayLabel(day)}</strong>
                  <div className="slots">
                    {free.slice(0, 8).map((s) => (
                      <button
                        key={s.start}
                        className={chosen?.start === s.start ? "selected" : "secondary"}
                        aria-pressed={chosen?.start === s.start}
                        aria-label={when(s.start, zone)}
                        onClick={() => {
                          if (moving) {
                            const target = moving;
                            void change.run(async () => {
                              await call(session, "POST", `/api/v1/appointments/${target.appointment_id}/reschedule`, {
                                start: s.start,
                                end: s.end,
                              });
                              setMoving(null);
                              await load();
                              return `Appointment moved to ${when(s.start, zone)}.`;
                            });
                          } else setChosen(s);
                        }}
                      >
                        {clock(s.start, zone)}
                      </button>
                    ))}
                    {free.length > 8 && <span className="hint">+{free.length - 8} more</span>}
                  </div>
                </div>
              ))}
          </div>
        )}
        {!moving && (
          <BookForm
            action={book}
            patient={patient}
            onPatient={onPatient}
            slot={chosen}
            zone={zone}
            onBook={async (reason) => {
              if (!patient) throw new Error("Choose the patient first (find them by record number here, or under Patients).");
              if (!chosen) throw new Error("Choose one of the free slots above.");
              await call(session, "POST", "/api/v1/appointments", {
                patient_id: patient.patient_id,
                physician_id: doctor,
                start: chosen.start,
                end: chosen.end,
                reason,
              });
              const at = when(chosen.start, zone);
              setChosen(null);
              await load();
              return `Booked ${fullName(patient)} with ${doctorName} on ${at}.`;
            }}
          />
        )}
      </section>
      {doctor && <WorkingHours physicianId={doctor} onChanged={() => void view.run(load)} />}
    </>
  );
}

function BookForm(props: {
  action: Action;
  patient: PatientBrief | null;
  onPatient: (p: PatientBrief | null) => void;
  slot: Slot | null;
  zone: string;
  onBook: (reason: string) => Promise<string>;
}): ReactNode {
  const { session } = useApp();
  const find = useAction();
  return (
    <div className="card">
      <h3>Book</h3>
      <p>
        Patient:{" "}
        {props.patient ? (
          <strong>
            {fullName(props.patient)} ({props.patient.mrn}, born {props.patient.date_of_birth})
          </strong>
        ) : (
          "none chosen"
        )}
        {" · "}Time: {props.slot ? <strong>{when(props.slot.start, props.zone)}</strong> : "choose a free slot above"}
      </p>
      {!props.patient && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const mrn = field(e.currentTarget, "book_mrn");
            void find.run(async () => {
              const patients = await searchPatients(session, { mrn });
              if (!patients.length) throw new Error("No patient has this record number.");
              props.onPatient(patients[0]);
            });
          }}
        >
          <Field label="Find the patient by record number" name="book_mrn" action={find} placeholder="MH-…" />
          <button className="secondary" disabled={find.busy}>
            Find
          </button>
        </form>
      )}
      <Status action={find} />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const reason = field(form, "reason");
          void props.action.run(async () => {
            const done = await props.onBook(reason);
            form.reset();
            return done;
          });
        }}
      >
        <Field label="Reason for visit" name="reason" required maxLength={500} action={props.action} />
        <button disabled={props.action.busy}>{props.action.busy ? "Booking…" : "Book appointment"}</button>
        {props.patient && (
          <button type="button" className="secondary" onClick={() => props.onPatient(null)}>
            Another patient
          </button>
        )}
      </form>
      <Status action={props.action} />
    </div>
  );
}

function WorkingHours({ physicianId, onChanged }: { physicianId: string; onChanged: () => void }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  const [weekly, setWeekly] = useState<{ weekday: string; start: string; end: string }[] | null>(null);
  useEffect(() => {
    void action.run(async () => {
      const availability = await call<{ weekly: { weekday: string; start: string; end: string }[] }>(
        session,
        "GET",
        `/api/v1/physicians/${physicianId}/availability`,
      );
      setWeekly(availability.weekly);
    });
  }, [session, physicianId]); // eslint-disable-line react-hooks/exhaustive-deps
  const days = new Set((weekly ?? []).map((p) => p.weekday));
  return (
    <section aria-labelledby="hours-title">
      <h2 id="hours-title">Working hours</h2>
      {weekly === null ? (
        <Loading what="working hours" />
      ) : weekly.length === 0 ? (
        <p>No working hours are set for this physician: no slot can be booked.</p>
      ) : (
        <p>{weekly.map((p) => `${p.weekday.slice(0, 3)} ${p.start}–${p.end}`).join(", ")}</p>
      )}
      <form
        key={weekly ? weekly.length : -1}
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const start = field(form, "hours_start");
          const end = field(form, "hours_end");
          const chosenDays = WEEKDAYS.filter((d) => (form.elements.namedItem(`day_${d}`) as HTMLInputElement).checked);
          void action.run(async () => {
            const reply = await call<{ weekly: { weekday: string; start: string; end: string }[]; affected: unknown[] }>(
              session,
              "PUT",
              `/api/v1/physicians/${physicianId}/working-hours`,
              { weekly: chosenDays.map((weekday) => ({ weekday, start, end })) },
            );
            setWeekly(reply.weekly);
            onChanged();
            return reply.affected.length
              ? `Working hours saved; ${reply.affected.length} booked appointments no longer fit: rebook or cancel them.`
              : "Working hours saved.";
          });
        }}
      >
        <fieldset>
          <legend>Days</legend>
          {WEEKDAYS.map((d) => (
            <label key={d} className="inline">
              <input type="checkbox" name={`day_${d}`} defaultChecked={weekly?.length ? days.has(d) : WEEKDAYS.indexOf(d) < 5} />{" "}
              {d.slice(0, 3)}
            </label>
          ))}
        </fieldset>
        <Field label="From" name="hours_start" type="time" defaultValue={weekly?.[0]?.start ?? "08:00"} required action={action} />
        <Field label="To" name="hours_end" type="time" defaultValue={weekly?.[0]?.end ?? "18:00"} required action={action} />
        <button disabled={action.busy}>Save working hours</button>
      </form>
      <Status action={action} />
    </section>
  );
}
