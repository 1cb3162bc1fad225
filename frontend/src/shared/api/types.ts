// Names for the generated API shapes the screens use (schema.ts is generated: `make api-types`).
import type { components } from "./schema";

type S = components["schemas"];

export type Me = S["Me"];
export type Role = S["Role"];
export type StaffEntry = S["DirectoryEntry"];
export type Account = S["Account"];
export type TokenInfo = S["TokenInfo"];
export type IssuedToken = S["IssuedToken"];
export type Replica = S["StatusReply"];
export type StoredAuditEvent = S["StoredAuditEvent"];
export type AuditEvent = S["AuditEvent"];
export type AuditPage = S["AuditPage"];
export type BreakGlassGrant = S["BreakGlassGrant"];

export type Appointment = S["Appointment"];
export type AppointmentStatus = S["AppointmentStatus"];
export type Calendar = S["Calendar"];
export type Today = S["Today"];
export type TimeRange = S["TimeRange"];
export type Availability = S["Availability"];
export type WorkingPeriod = S["WorkingPeriod"];
export type Weekday = S["Weekday"];
export type Absence = S["Absence"];
export type AbsenceKind = S["AbsenceKind"];
export type NewAbsence = S["NewAbsence"];

export type Demographics = S["Demographics"];
export type Patient = S["Patient"];
export type PatientBrief = S["PatientBrief"];
export type Sex = S["Sex"];

export type Medicine = S["Medicine"];
export type MedicineDetails = S["MedicineDetails"];
export type DosageForm = S["DosageForm"];
export type Route = S["Route"];
export type MedicineType = S["MedicineType"];
export type DutyStatus = S["DutyStatus"];
export type DutyList = S["DutyList"];
