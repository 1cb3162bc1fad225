// FHIR Bulk Data $export from the administrator's screen (contracts/fhirexport.py): a
// kick-off by one administrator, the approval by another, the status (X-Progress while it
// runs, the manifest when it is done) and the sealed files. These routes are FHIR's, not
// in the OpenAPI document, so they are sent here with the same request signature as every
// API call. The browser never holds the recipient's private key: a file downloads sealed,
// as the gateway serves it, for the recipient to open.
import { ApiError, signingFetch, type Session } from "../shared/api/client";

export const EXPORT_TYPES = [
  "Patient",
  "Encounter",
  "Condition",
  "Observation",
  "AllergyIntolerance",
  "MedicationRequest",
  "Provenance",
  "Appointment",
] as const;

const BASE = "/fhir/R4";

export interface ManifestOutput {
  type: string;
  url: string;
  count?: number;
}

export interface Manifest {
  transactionTime: string;
  request: string;
  output: ManifestOutput[];
  extension?: { requestedBy?: string; approvedBy?: string; recipientPublicKey?: string; encryption?: string };
}

export type ExportStatus = { state: "running"; progress: string } | { state: "complete"; manifest: Manifest };

/** "6 of 11 patients read, 6 exported" → 6 and 11 (null while nothing is counted yet). */
export function parseProgress(text: string): { done: number; total: number } | null {
  const found = /(\d+) of (\d+)/.exec(text);
  return found ? { done: Number(found[1]), total: Number(found[2]) } : null;
}

/** The kick-off's path: every patient or one physician's, with `_type` (only when some
 * types are left out) and `_since` (the local date and time as an instant). */
export function kickoffPath(group: string, types: readonly string[], since: string): string {
  const query = new URLSearchParams();
  if (types.length > 0 && types.length < EXPORT_TYPES.length) query.set("_type", types.join(","));
  if (since) query.set("_since", new Date(since).toISOString());
  const path = group ? `${BASE}/Group/${encodeURIComponent(group)}/$export` : `${BASE}/Patient/$export`;
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** The job id at the end of a Content-Location status URL. */
export function jobIdOf(location: string | null): string {
  return location?.split("/").pop() ?? "";
}

/** Files and resources per type, in the export's type order. */
export function summary(manifest: Manifest): { type: string; files: number; count: number }[] {
  const rows = new Map<string, { type: string; files: number; count: number }>();
  for (const o of manifest.output) {
    const row = rows.get(o.type) ?? { type: o.type, files: 0, count: 0 };
    row.files += 1;
    row.count += o.count ?? 0;
    rows.set(o.type, row);
  }
  const order = (t: string): number => {
    const i = (EXPORT_TYPES as readonly string[]).indexOf(t);
    return i < 0 ? EXPORT_TYPES.length : i;
  };
  return [...rows.values()].sort((a, b) => order(a.type) - order(b.type));
}

/** The sentence of a refusal: the OperationOutcome's diagnostics, or the status. */
export function outcomeText(body: unknown, status: number): string {
  const issue = (body as { issue?: { diagnostics?: string }[] } | null)?.issue?.[0];
  return issue?.diagnostics ?? `The gateway answered ${status}.`;
}

async function fhir(session: Session, method: string, path: string, body?: unknown): Promise<Response> {
  const url = new URL(path, window.location.origin).toString();
  const request = new Request(url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
  });
  const response = await signingFetch(() => session.signingKey(), session.accountId)(request);
  if (!response.ok) {
    const said: unknown = await response.json().catch(() => null);
    throw new ApiError(response.status, "fhir", outcomeText(said, response.status), null);
  }
  return response;
}

/** Kick off an export; the job id (it waits for another administrator's approval). */
export async function requestExport(
  session: Session,
  recipient: string,
  group: string,
  types: readonly string[],
  since: string,
): Promise<string> {
  const response = await fhir(session, "POST", kickoffPath(group, types, since), { recipient_public_key: recipient });
  return jobIdOf(response.headers.get("Content-Location"));
}

/** Approve another administrator's export: it starts at once. */
export async function approveExport(session: Session, jobId: string): Promise<string> {
  const response = await fhir(session, "POST", `${BASE}/$export-approval/${encodeURIComponent(jobId)}`, {});
  return response.headers.get("X-Progress") ?? "";
}

export async function exportStatus(session: Session, jobId: string): Promise<ExportStatus> {
  const response = await fhir(session, "GET", `${BASE}/$export-status/${encodeURIComponent(jobId)}`);
  if (response.status === 202) return { state: "running", progress: response.headers.get("X-Progress") ?? "" };
  return { state: "complete", manifest: (await response.json()) as Manifest };
}

/** One output file, sealed as stored (only the recipient's private key opens it). */
export async function sealedFile(session: Session, url: string): Promise<Blob> {
  const response = await fhir(session, "GET", new URL(url).pathname);
  return response.blob();
}

/** A file name for a manifest entry: type and page, e.g. Patient-2.ndjson.sealed. */
export function fileName(output: ManifestOutput): string {
  return `${output.type}-${output.url.split("/").pop() ?? "1"}.ndjson.sealed`;
}
