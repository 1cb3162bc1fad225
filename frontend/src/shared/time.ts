// Dates and times in the clinic's time zone (GET /me `clinic_time_zone`), whoever looks and
// wherever their browser is: set once at unlock (`setClinicZone`), used by every screen.

let zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** The clinic's IANA zone, from /me (MEDIHAVEN_CLINIC_TIMEZONE). */
export function setClinicZone(value: string): void {
  if (value) zone = value;
}

export function clinicZone(): string {
  return zone;
}

/** YYYY-MM-DD of an instant in a time zone (the clinic's by default). */
export function dayIn(instant: Date, tz: string = zone): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: tz,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).formatToParts(instant);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** Today in the clinic. */
export function clinicToday(): string {
  return dayIn(new Date());
}

export function addDays(day: string, days: number): string {
  const date = new Date(`${day}T12:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return date.toISOString().slice(0, 10);
}

export function mondayOf(day: string): string {
  const date = new Date(`${day}T12:00:00Z`);
  return addDays(day, -((date.getUTCDay() + 6) % 7));
}

export function weekDays(monday: string): string[] {
  return [...Array(7)].map((_, i) => addDays(monday, i));
}

/** "09:30" in the clinic's time. */
export function clock(value: string, tz: string = zone): string {
  return new Date(value).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone: tz });
}

/** "Thu 3 Dec, 10:00" in the clinic's time. */
export function when(value: string, tz: string = zone): string {
  return new Date(value).toLocaleString("en-GB", {
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: tz,
  });
}

/** "Thu 3 Dec 2026, 10:00:05" in the clinic's time (the audit log's precision). */
export function moment(value: string, tz: string = zone): string {
  return new Date(value).toLocaleString("en-GB", {
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZone: tz,
  });
}

/** "Thu 3 Dec" of a calendar day (YYYY-MM-DD). */
export function dayLabel(day: string): string {
  return new Date(`${day}T12:00:00Z`).toLocaleDateString("en-GB", {
    weekday: "short",
    day: "numeric",
    month: "short",
    timeZone: "UTC",
  });
}

/** "Thursday 3 December 2026" of a calendar day. */
export function longDay(day: string): string {
  return new Date(`${day}T12:00:00Z`).toLocaleDateString("en-GB", {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
    timeZone: "UTC",
  });
}

/** Minutes after midnight of an instant's wall-clock time in the clinic. */
export function minuteOfDay(value: string, tz: string = zone): number {
  const [h, m] = clock(value, tz).split(":").map(Number);
  return h * 60 + m;
}

/** A local wall-clock time ("2026-12-03T10:00", what a datetime-local field holds) in the
 * clinic's zone, as a UTC instant (ISO). DST gaps map forward, as the server does. */
export function instantOf(local: string, tz: string = zone): string {
  const [day, time] = local.split("T");
  const guess = new Date(`${day}T${time}:00Z`).getTime();
  // The zone's offset at the guess, then once more at the corrected instant.
  let instant = guess;
  for (let i = 0; i < 2; i++) {
    const shown = new Date(instant);
    const wall = new Date(`${dayIn(shown, tz)}T${clock(shown.toISOString(), tz)}:00Z`).getTime();
    instant += guess - wall;
  }
  return new Date(instant).toISOString();
}
