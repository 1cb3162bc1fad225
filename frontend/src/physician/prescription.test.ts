import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

import { keyFromSeed } from "../shared/api/httpsig";
import { canonicalPrescription, type PrescriptionCore, signPrescription, timestamp } from "./prescription";
import { fingerprint } from "./format";

const here = dirname(fileURLToPath(import.meta.url));
const shared = JSON.parse(readFileSync(resolve(here, "../../../tests/vectors/prescription_vectors.json"), "utf8")) as {
  private_key_seed_hex: string;
  vectors: { name: string; core: PrescriptionCore; canonical: string; signature: string; fingerprint: string }[];
};

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));
}

describe("the browser signs the same prescription bytes as contracts.records.canonical_prescription", () => {
  for (const vector of shared.vectors) {
    it(vector.name, async () => {
      expect(canonicalPrescription(vector.core)).toBe(vector.canonical);
      const key = await keyFromSeed(hex(shared.private_key_seed_hex));
      expect(await signPrescription(key, vector.core)).toBe(vector.signature);
      // The fingerprint on the printed prescription, as `medihaven rx verify` prints it.
      expect(await fingerprint(vector.signature)).toBe(vector.fingerprint);
    });
  }

  it("writes created_at with microseconds, in UTC", () => {
    expect(timestamp(new Date("2026-03-01T10:30:00.123+01:00"))).toBe("2026-03-01T09:30:00.123000Z");
    expect(timestamp(new Date("2026-12-31T23:59:59.999Z"))).toBe(shared.vectors[1].core.created_at);
  });
});
