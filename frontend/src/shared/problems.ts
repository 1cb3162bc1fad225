// What went wrong, in words a clinic worker understands: the ONE place where the gateway's
// validation details (pydantic's {loc, msg, type}, and the services' own problems of the
// same shape) become sentences. Every form shows them through ui.tsx: each problem once,
// under its field; what no field on screen can show goes in the form's status line.
import { ApiError } from "./api/client";

/** One problem with what the user entered. `key` is its field's dotted path without the
 * transport part ("demographics.emergency_contact.phone"); "" for the form as a whole. */
export interface Problem {
  key: string;
  sentence: string;
}

interface Detail {
  loc?: (string | number)[];
  msg?: string;
  type?: string;
}

const TRANSPORT = new Set(["body", "query", "path"]);

/** How a field is called in a sentence, by the last part of its path. */
const NAMES: Record<string, string> = {
  given_name: "given name",
  family_name: "family name",
  date_of_birth: "date of birth",
  sex: "sex",
  phone: "phone number",
  email: "email address",
  line1: "address",
  line2: "second address line",
  postal_code: "postal code",
  city: "city",
  region: "region",
  country: "country",
  name: "name",
  relationship: "relationship",
  company: "insurance company",
  member_id: "member number",
  valid_until: "date the insurance is valid until",
  mrn: "record number",
  expires_hours: "validity",
  role: "role",
  reason: "reason",
  note: "note",
  start: "start",
  end: "end",
  first_day: "first day",
  last_day: "last day",
  weekday: "weekday",
  kind: "kind",
  duration_minutes: "length",
  username: "username",
  display_name: "display name",
  specialty: "specialty",
  token: "registration token",
  strength: "strength",
  active_ingredient: "active ingredient",
  dosage_form: "dosage form",
  route: "route",
  type: "type",
  default_instructions: "instructions",
  text: "message",
  substance: "substance",
  severity: "severity",
};

/** Sentences for patterns a field must match, where "characters that are not allowed"
 * would not help. */
const PATTERNS: Record<string, string> = {
  country: "Write the country as its two-letter code in capitals, e.g. DE.",
  postal_code: "A postal code has only letters, digits, spaces and dashes.",
  mrn: "A record number looks like MH- and eight letters or digits.",
  username: "A username has lower case letters, digits and . _ - only.",
};

function nameOf(key: string): string {
  const last = key
    .split(".")
    .filter((p) => !/^\d+$/.test(p))
    .pop();
  if (!last) return "entry";
  return NAMES[last] ?? last.replace(/_/g, " ");
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?)]$/.test(first) ? first : `${first}.`;
}

function numberIn(msg: string): string {
  return /(-?\d[\d.:-]*)/.exec(msg)?.[1]?.replace(/\.$/, "") ?? "";
}

/** The sentence for one detail. Sentences the services wrote already (custom types) are
 * kept as they are; pydantic's standard ones are said again in plain words. */
export function sentenceOf(detail: Detail, key: string): string {
  const type = detail.type ?? "";
  const msg = detail.msg ?? "";
  const what = `The ${nameOf(key)}`;
  const last = key.split(".").pop() ?? "";
  switch (type) {
    case "missing":
      return `Enter the ${nameOf(key)}.`;
    case "string_too_short": {
      const n = Number(numberIn(msg));
      return n > 1 ? `${what} needs at least ${n} characters.` : `Enter the ${nameOf(key)}.`;
    }
    case "string_too_long":
      return `${what} can have at most ${numberIn(msg)} characters.`;
    case "too_long":
      return `There can be at most ${numberIn(msg)} of these.`;
    case "too_short":
      return `Give at least ${numberIn(msg)} of these.`;
    case "string_pattern_mismatch":
      return PATTERNS[last] ?? `${what} has characters that are not allowed here.`;
    case "enum":
    case "literal_error":
      return `Choose one of the offered values for the ${nameOf(key)}.`;
    case "date_parsing":
    case "date_from_datetime_parsing":
    case "date_from_datetime_inexact":
    case "date_type":
      return `Enter the ${nameOf(key)} as a date (day, month and year).`;
    case "datetime_parsing":
    case "datetime_from_date_parsing":
    case "datetime_type":
    case "timezone_aware":
      return `Enter the ${nameOf(key)} as a date and a time.`;
    case "int_parsing":
    case "int_type":
    case "int_from_float":
      return `Enter the ${nameOf(key)} as a whole number.`;
    case "float_parsing":
    case "float_type":
      return `Enter the ${nameOf(key)} as a number.`;
    case "bool_parsing":
    case "bool_type":
      return `Choose yes or no for the ${nameOf(key)}.`;
    case "greater_than_equal":
      return `${what} must be at least ${numberIn(msg)}.`;
    case "greater_than":
      return `${what} must be more than ${numberIn(msg)}.`;
    case "less_than_equal":
      return `${what} can be at most ${numberIn(msg)}.`;
    case "less_than":
      return `${what} must be less than ${numberIn(msg)}.`;
    case "extra_forbidden":
      return `The ${nameOf(key)} is not expected here.`;
    case "json_invalid":
    case "json_type":
    case "model_type":
    case "model_attributes_type":
    case "dict_type":
    case "list_type":
      return "The app sent something the server could not read: reload the page and try again.";
    case "value_error":
    case "assertion_error": {
      const text = msg.replace(/^(Value error|Assertion failed),\s*/, "");
      if (/^(must|is|has|cannot|should) /.test(text)) return sentence(`${what} ${text}`);
      if (/^not /.test(text)) return sentence(`This is ${text}`);
      return sentence(text);
    }
    default:
      return sentence(msg) || "This entry is not valid.";
  }
}

/** Every problem of a refused request, once each: one sentence per field (different
 * problems with the same field joined), in the order the server named them. */
export function problemsOf(error: unknown): Problem[] {
  if (!(error instanceof ApiError) || !Array.isArray(error.details)) return [];
  const byKey = new Map<string, string[]>();
  for (const detail of error.details as Detail[]) {
    if (typeof detail !== "object" || detail === null) continue;
    const parts = (detail.loc ?? []).map(String);
    while (parts.length && TRANSPORT.has(parts[0])) parts.shift();
    const key = parts.join(".");
    const said = sentenceOf(detail, key);
    const list = byKey.get(key) ?? [];
    if (said && !list.includes(said)) list.push(said);
    byKey.set(key, list);
  }
  return [...byKey].map(([key, sentences]) => ({ key, sentence: sentences.join(" ") }));
}

function names(key: string, name: string): boolean {
  return key === name || key.endsWith(`.${name}`);
}

/** The problem a field named `name` shows: the one at exactly that path, or else the least
 * nested one whose path ends with it, unless another field on screen (`rivals`) names it
 * more closely: with fields "phone" and "emergency_contact.phone", "phone" shows
 * "demographics.phone" and never "demographics.emergency_contact.phone". */
export function problemFor(problems: Problem[], name: string, rivals: Iterable<string> = []): Problem | undefined {
  const closer = [...rivals].filter((r) => r !== name && r.length > name.length && names(r, name));
  const mine = problems.filter((p) => names(p.key, name) && !closer.some((r) => names(p.key, r)));
  return mine.find((p) => p.key === name) ?? mine.sort((a, b) => a.key.split(".").length - b.key.split(".").length)[0];
}

/** The problems no field named in `shown` shows, said where the form's status goes. */
export function unshown(problems: Problem[], shown: Iterable<string>): Problem[] {
  const all = [...shown];
  const taken = new Set<string>();
  for (const name of all) {
    const p = problemFor(problems, name, all);
    if (p) taken.add(p.key);
  }
  return problems.filter((p) => !taken.has(p.key));
}

/** One sentence for an error that is not about a field: the server's own words (conflicts
 * are named in the clinic's time there), or the error's message. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 422 && problemsOf(error).length > 0) return "Some entries need correcting.";
    return sentence(error.message);
  }
  return error instanceof Error ? error.message : String(error);
}
