// Audit events in words: what happened, by whom, to which record (never the raw event name
// alone). Types the app does not know yet are said from their name.
import type { components } from "../shared/api/schema";
import type { AuditEvent } from "../shared/api/types";

type AuditType = components["schemas"]["AuditType"];

/** Words for every event type: a type added to `contracts.audit.AuditType` without words
 * here does not type-check. */
const WHAT: Record<AuditType, string> = {
  "patient.create": "registered a patient",
  "patient.read": "read a patient's demographics",
  "patient.update": "edited a patient's demographics",
  "patient.search": "searched for a patient",
  "patient.list": "listed the recently seen patients",
  "patient.briefs": "read patients' names for a list",
  "patient.summary": "opened a patient's chart",
  "patient.flags": "changed a patient's clinical alerts",
  "patient.break_glass": "opened a chart by emergency access (break-glass)",
  "patient.duplicate_shown": "was shown possible duplicates while registering a patient",
  "encounter.create": "recorded an encounter",
  "encounter.amend": "amended an encounter",
  "encounter.read": "read an encounter",
  "encounter.list": "read a patient's encounters",
  "prescription.create": "signed a prescription",
  "prescription.cancel": "cancelled a prescription",
  "prescription.complete": "marked a prescription completed",
  "prescription.check": "ran a prescribing safety check",
  "prescription.list": "read a patient's medication history",
  "prescription.read": "read a prescription",
  "prescription.verify": "verified a prescription's signature",
  "allergy.record": "recorded an allergy",
  "allergy.change": "changed an allergy",
  "allergy.list": "read a patient's allergy list",
  "allergy.list_built": "built a patient's allergy list from the encounters",
  "catalog.add": "added a medicine to the catalog",
  "catalog.update": "edited a medicine in the catalog",
  "catalog.retire": "retired a medicine from the catalog",
  "catalog.sample_loaded": "loaded the sample medicine catalog",
  "export.requested": "asked for a bulk export of patient data",
  "export.approved": "approved a bulk export of patient data",
  "export.patient": "exported a patient's record (bulk export)",
  "appointment.book": "booked an appointment",
  "appointment.cancel": "cancelled an appointment",
  "appointment.reschedule": "moved an appointment",
  "appointment.read": "read an appointment",
  "appointment.check_in": "checked a patient in",
  "appointment.no_show": "recorded a no-show",
  "appointment.start": "started a visit",
  "appointment.finish": "finished a visit",
  "availability.change": "changed a physician's working time",
  "calendar.read": "read a physician's calendar",
  "calendar.today": "read today's appointments",
  "auth.token_issued": "issued a registration token",
  "auth.token_revoked": "revoked a registration token",
  "auth.registered": "registered with a registration token",
  "auth.key_rotated": "replaced their signing key",
  "auth.account_disabled": "disabled a staff account",
  "auth.account_enabled": "enabled a staff account",
  "attendance.check_in": "checked in for a shift",
  "attendance.check_out": "checked out of a shift",
  "attendance.event_refused": "sent an attendance event that was refused",
  "attendance.webhook_refused": "sent a time-clock message that was refused",
  "attendance.unreadable": "was refused patient data (the attendance state could not be read)",
  "attendance.off_duty_refused": "was refused patient data while off duty",
  "attendance.off_duty_emergency": "opened patient data off duty for an emergency",
  "attendance.off_duty_break_glass": "used emergency access (break-glass) while off duty",
  "vault.initialise": "initialised the keyvault",
  "vault.unseal": "submitted an unseal share",
  "vault.seal": "sealed the keyvault",
  "vault.rotate": "rotated the keyvault's keys",
  "vault.rewrap_started": "started re-encrypting the records under the new keys",
  "vault.rewrap_completed": "finished re-encrypting the records under the new keys",
  "vault.rewrap_cancelled": "cancelled a re-encryption of the records",
  "vault.rewrap_rows_failed": "met records that could not be re-encrypted",
  "vault.min_decryption": "changed which old keys may still decrypt",
  "vault.key_destroyed": "destroyed an old key",
  "vault.ceremony_started": "started a change of the administrators' key shares",
  "vault.ceremony_share": "gave their key share to a change of shares",
  "vault.ceremony_prepared": "prepared the new key shares",
  "vault.ceremony_committed": "committed the new key shares",
  "vault.ceremony_cancelled": "cancelled a change of the key shares",
  "vault.root_adopted": "moved a keyvault replica to the new root key",
  "vault.care_refused": "was refused patient data (no care relationship)",
  "vault.grant_refused": "was refused a decryption",
  "gateway.signature_refused": "sent a request whose signature was refused",
  "gateway.rate_limited": "sent too many requests (rate limit)",
  "bus.call_refused": "was refused a call on the message bus",
  "bus.event_refused": "was refused an event on the message bus",
  "bus.signature_refused": "sent a message whose signature was refused",
  "integrity.row_rejected": "met a damaged or edited record (refused)",
  "audit.integrity_alert": "raised an integrity alert",
};

const OUTCOME: Record<AuditEvent["outcome"], string> = {
  success: "",
  refused: " (refused)",
  failure: " (failed)",
};

/** "read a patient's demographics (refused)". */
export function whatHappened(event: AuditEvent): string {
  const words = WHAT[event.type as AuditType] ?? event.type.replace(/[._]/g, " ");
  const emergency = event.purpose_of_use === "ETREAT" ? ", for emergency treatment" : "";
  return `${words}${emergency}${OUTCOME[event.outcome] ?? ` (${event.outcome})`}`;
}

/** Every event type the app can name, for the filter. */
export const KNOWN_TYPES = (Object.keys(WHAT) as AuditType[]).sort();

export function typeLabel(type: string): string {
  return WHAT[type as AuditType] ?? type.replace(/[._]/g, " ");
}
