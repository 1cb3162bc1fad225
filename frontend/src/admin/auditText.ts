// Audit events in words: what happened, by whom, to which record (never the raw event name
// alone). Types the app does not know yet are said from their name.
import type { AuditEvent } from "../shared/api/types";

const WHAT: Record<string, string> = {
  "patient.create": "registered a patient",
  "patient.read": "read a patient's demographics",
  "patient.update": "edited a patient's demographics",
  "patient.search": "searched for a patient",
  "patient.list": "listed the recently seen patients",
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
  "catalog.add": "added a medicine to the catalog",
  "catalog.update": "edited a medicine in the catalog",
  "catalog.retire": "retired a medicine from the catalog",
  "catalog.sample_loaded": "loaded the sample medicine catalog",
  "auth.bootstrap": "issued the first administrator's registration token",
  "auth.issue_token": "issued a registration token",
  "auth.token_issued": "issued a registration token",
  "auth.revoke_token": "revoked a registration token",
  "auth.token_revoked": "revoked a registration token",
  "auth.register": "registered with a registration token",
  "auth.registered": "registered with a registration token",
  "auth.set_account_status": "changed a staff account's status",
  "auth.rotate_key": "replaced their signing key",
  "auth.key_rotated": "replaced their signing key",
  "auth.list_staff": "listed the staff accounts",
  "auth.list_tokens": "listed the registration tokens",
  "vault.initialise": "initialised the keyvault",
  "vault.unseal": "submitted an unseal share",
  "vault.seal": "sealed the keyvault",
  "vault.rotate": "rotated the keyvault's keys",
  "vault.care_refused": "was refused patient data (no care relationship)",
  "vault.grant_refused": "was refused a decryption",
  "gateway.signature_refused": "sent a request whose signature was refused",
  "gateway.rate_limited": "sent too many requests (rate limit)",
  "audit.query": "read the audit log",
  "audit.patient_history": "read a patient's access history",
  "audit.export": "exported the audit log",
  "audit.verify": "verified the audit log's hash chain",
  "audit.verify_full": "verified the whole audit log",
  "audit.integrity_alert": "raised an integrity alert",
  "audit.event_quarantined": "kept an audit event apart (wrong publisher)",
  "bus.call_refused": "was refused a call on the message bus",
  "bus.event_refused": "was refused an event on the message bus",
  "bus.signature_refused": "sent a message whose signature was refused",
  "integrity.row_rejected": "met a damaged or edited record (refused)",
  "chat.send": "sent a chat message",
  "chat.open_direct": "opened a chat conversation",
  "chat.create_group": "created a chat group",
};

const OUTCOME: Record<AuditEvent["outcome"], string> = {
  success: "",
  refused: " (refused)",
  failure: " (failed)",
};

/** "read a patient's demographics (refused)". */
export function whatHappened(event: AuditEvent): string {
  const words = WHAT[event.type] ?? event.type.replace(/[._]/g, " ");
  const emergency = event.purpose_of_use === "ETREAT" ? ", for emergency treatment" : "";
  return `${words}${emergency}${OUTCOME[event.outcome] ?? ` (${event.outcome})`}`;
}

/** Every event type the app can name, for the filter. */
export const KNOWN_TYPES = Object.keys(WHAT).sort();

export function typeLabel(type: string): string {
  return WHAT[type] ?? type.replace(/[._]/g, " ");
}
