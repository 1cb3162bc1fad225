// Pure helpers of the physician's screens: a signature's fingerprint, and what an
// overridden alert's code stands for.
import { fromB64 } from "../shared/api/httpsig";

/** SHA-256 of the signature's bytes (the stored base64 decoded), hex in groups of four:
 * short enough to read out on the phone and compare with the signature on record. */
export async function fingerprint(signatureB64: string): Promise<string> {
  const text = signatureB64.replace(/-/g, "+").replace(/_/g, "/");
  const padded = text + "=".repeat((4 - (text.length % 4)) % 4);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", fromB64(padded) as BufferSource));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g)!.join(" ");
}

export const ALERT_KINDS: Record<string, string> = {
  allergy: "Allergy",
  cross_sensitivity: "Possible cross-sensitivity",
  duplicate_therapy: "Duplicate therapy",
  interaction: "Interaction",
  unchecked: "Not fully checked",
};

/** What an alert code (`<kind>:<what>`, as signed on a prescription) was about, in words:
 * the allergy or prescription it names when they are known here. */
export function alertLabel(
  code: string,
  allergyName: (allergyId: string) => string | undefined,
  drugName: (prescriptionId: string) => string | undefined,
): string {
  const at = code.indexOf(":");
  const kind = at < 0 ? code : code.slice(0, at);
  const what = at < 0 ? "" : code.slice(at + 1);
  const title = ALERT_KINDS[kind] ?? kind.replace(/_/g, " ");
  if (kind === "allergy" || kind === "cross_sensitivity") {
    const name = allergyName(what);
    return name ? `${title} (${name})` : title;
  }
  if (kind === "duplicate_therapy" || kind === "interaction") {
    const name = drugName(what);
    return name ? `${title} with ${name}` : title;
  }
  if (kind === "unchecked")
    return what === "drug" ? `${title}: a drug outside the vocabulary` : `${title}: a damaged record`;
  return title;
}
