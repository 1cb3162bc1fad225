import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";

import { b64 } from "../shared/api/httpsig";
import { contentOf, draftOf, emptyEncounter } from "./EncounterForm";
import { alertLabel, fingerprint } from "./format";
import type { EncounterContent } from "./types";

describe("the printed signature fingerprint", () => {
  it("is the SHA-256 of the signature bytes, hex in groups of four", async () => {
    const signature = Uint8Array.from({ length: 64 }, (_, i) => (i * 37) % 256);
    const expected = createHash("sha256").update(signature).digest("hex");
    const printed = await fingerprint(b64(signature));
    expect(printed.replace(/ /g, "")).toBe(expected);
    expect(printed.split(" ")).toHaveLength(16);
    expect(await fingerprint(b64(signature).replace(/=+$/, ""))).toBe(printed); // unpadded too
  });
});

describe("overridden alert codes in words", () => {
  const allergy = (id: string): string | undefined => (id === "a1" ? "Penicillin" : undefined);
  const drug = (id: string): string | undefined => (id === "p1" ? "Warfarin 1 mg" : undefined);
  it("names the allergy or the prescription they are about", () => {
    expect(alertLabel("allergy:a1", allergy, drug)).toBe("Allergy (Penicillin)");
    expect(alertLabel("cross_sensitivity:a1", allergy, drug)).toBe("Possible cross-sensitivity (Penicillin)");
    expect(alertLabel("interaction:p1", allergy, drug)).toBe("Interaction with Warfarin 1 mg");
    expect(alertLabel("duplicate_therapy:p9", allergy, drug)).toBe("Duplicate therapy");
    expect(alertLabel("unchecked:drug", allergy, drug)).toBe("Not fully checked: a drug outside the vocabulary");
  });
});

describe("an encounter's content through the form", () => {
  const content: EncounterContent = {
    occurred_at: "2026-03-01T09:30:00Z",
    chief_complaint: "Wheezing at night",
    history_of_present_illness: "Two weeks.\nWorse when cold.",
    examination: "Expiratory wheeze",
    assessment: "Likely asthma",
    plan: "Salbutamol",
    diagnoses: [{ code: "J45.9", description: "Asthma, unspecified" }],
    vital_signs: {
      blood_pressure: { systolic: 128, diastolic: 82, unit: "mmHg" },
      heart_rate: { value: 88, unit: "/min" },
      temperature: { value: 99.1, unit: "[degF]" },
      weight: { value: 80.5, unit: "kg" },
    },
    allergies: [{ substance: "Latex", severity: "mild", status: "active" }],
  };

  it("comes back unchanged when nothing is edited (amending keeps what the form does not show)", () => {
    const back = contentOf(draftOf(content), content.occurred_at, content.allergies, content.vital_signs);
    expect(back).toEqual(content);
  });

  it("keeps titles whole (no comma splitting) and leaves out empty vital signs", () => {
    const draft = {
      ...emptyEncounter(),
      chief_complaint: " Cough ",
      diagnoses: [{ code: "J45.9", description: "Asthma, unspecified" }],
    };
    const made = contentOf(draft, content.occurred_at, []);
    expect(made.chief_complaint).toBe("Cough");
    expect(made.diagnoses).toEqual([{ code: "J45.9", description: "Asthma, unspecified" }]);
    expect(made.vital_signs).toBeNull();
  });
});
