// Shapes the screens share, the staff directory, and dates in the clinic's time zone.
import { createContext, useCallback, useContext, useEffect, useState } from "react";

import { call, type Session } from "./api";
import type { Live, LiveEvent } from "./live";

export type Role = "administrator" | "physician" | "receptionist";

export interface Me {
  account_id: string;
  username: string;
  display_name: string;
  role: Role;
  specialty: string | null;
}

export interface StaffEntry {
  account_id: string;
  display_name: string;
  role: Role;
  specialty: string | null;
}

export interface Appointment {
  appointment_id: string;
  patient_id: string;
  physician_id: string;
  start: string;
  end: string;
  status: string;
  reason: string | null;
  cancellation_reason: string | null;
}

export interface Calendar {
  physician_id: string;
  time_zone: string;
  first_day: string;
  last_day: string;
  working: { start: string; end: string }[];
  appointments: Appointment[];
}

export interface PatientBrief {
  patient_id: string;
  mrn: string;
  given_name: string;
  family_name: string;
  date_of_birth: string;
  sex: string;
}

export interface Context {
  session: Session;
  me: Me;
  live: Live;
}

export const AppContext = createContext<Context | null>(null);

export function useApp(): Context {
  const context = useContext(AppContext);
  if (!context) throw new Error("outside the unlocked app");
  return context;
}

/** Live events whose type starts with one of the prefixes. */
export function useLive(prefixes: string[], listener: (event: LiveEvent) => void): void {
  const { live } = useApp();
  const key = prefixes.join(",");
  useEffect(
    () =>
      live.subscribe((event) => {
        if (prefixes.some((p) => event.type.startsWith(p))) listener(event);
      }),
    [live, key, listener], // eslint-disable-line react-hooks/exhaustive-deps
  );
}

/** Active colleagues (the staff directory): names for ids, physicians to book with. */
export function useDirectory(
  session: Session,
  role?: Role,
): { staff: StaffEntry[]; name: (id: string) => string; reload: () => void } {
  const [staff, setStaff] = useState<StaffEntry[]>([]);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let live = true;
    call<{ staff: StaffEntry[] }>(session, "GET", "/api/v1/directory", undefined, { role }).then(
      (d) => live && setStaff(d.staff),
      () => live && setStaff([]),
    );
    return () => {
      live = false;
    };
  }, [session, role, generation]);
  const name = (id: string): string => staff.find((s) => s.account_id === id)?.display_name ?? id.slice(0, 8);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { staff, name, reload };
}

export const CLINIC_ZONE_FALLBACK = Intl.DateTimeFormat().resolvedOptions().timeZone;

let clinicZone: string | undefined;
/** The clinic's time zone, as calendars and free slots answer it (MEDIHAVEN_CLINIC_TIMEZONE):
 * times are shown in it everywhere once it is known. */
export function learnClinicZone(zone: string): void {
  clinicZone = zone;
}

/** YYYY-MM-DD of an instant in a time zone. */
export function dayIn(instant: Date, zone: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(instant);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")}`;
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

export function clock(value: string, zone?: string): string {
  return new Date(value).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone: zone ?? clinicZone });
}

export function when(value: string, zone: string | undefined = clinicZone): string {
  return new Date(value).toLocaleString("en-GB", {
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: zone,
  });
}

export function dayLabel(day: string): string {
  return new Date(`${day}T12:00:00Z`).toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
}

export function fullName(p: { given_name: string; family_name: string }): string {
  return `${p.given_name} ${p.family_name}`;
}

export type SearchParams = Partial<Record<"family_name" | "date_of_birth" | "phone" | "mrn", string>>;

/** Exact-match patient search (blind indexes on the server): family name + date of birth,
 * phone, or record number. Empty values are left out; no criterion at all is refused here. */
export async function searchPatients(session: Session, params: SearchParams): Promise<PatientBrief[]> {
  const given = Object.fromEntries(Object.entries(params).filter(([, value]) => value));
  if (Object.keys(given).length === 0) {
    throw new Error("Give a family name and date of birth, a phone or a record number.");
  }
  const result = await call<{ patients: PatientBrief[] }>(session, "GET", "/api/v1/patients/search", undefined, given);
  return result.patients;
}
