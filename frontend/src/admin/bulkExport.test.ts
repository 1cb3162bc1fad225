import { describe, expect, it } from "vitest";

import { EXPORT_TYPES, fileName, jobIdOf, kickoffPath, outcomeText, parseProgress, summary } from "./bulkExport";

describe("bulk export", () => {
  it("reads the progress a status answers while it runs", () => {
    expect(parseProgress("6 of 11 patients read, 6 exported")).toEqual({ done: 6, total: 11 });
    expect(parseProgress("approved: 0 of 3 patients")).toEqual({ done: 0, total: 3 });
    expect(parseProgress("awaiting a second administrator's approval")).toBeNull();
  });

  it("asks for _type only when types are left out, and _since as an instant", () => {
    expect(kickoffPath("", EXPORT_TYPES, "")).toBe("/fhir/R4/Patient/$export");
    expect(kickoffPath("", [], "")).toBe("/fhir/R4/Patient/$export");
    expect(kickoffPath("doc-1", ["Patient", "Appointment"], "")).toBe(
      "/fhir/R4/Group/doc-1/$export?_type=Patient%2CAppointment",
    );
    const since = kickoffPath("", ["Patient"], "2026-03-01T10:00");
    const instant = new URLSearchParams(since.split("?")[1]).get("_since") ?? "";
    expect(instant).toBe(new Date("2026-03-01T10:00").toISOString());
    expect(instant.endsWith("Z")).toBe(true);
  });

  it("sums the manifest's files per type in the export's order", () => {
    const base = "http://x/fhir/R4/$export-file/j";
    const manifest = {
      transactionTime: "t",
      request: "r",
      output: [
        { type: "Appointment", url: `${base}/Appointment/1`, count: 2 },
        { type: "Patient", url: `${base}/Patient/1`, count: 3 },
        { type: "Patient", url: `${base}/Patient/2`, count: 1 },
      ],
    };
    expect(summary(manifest)).toEqual([
      { type: "Patient", files: 2, count: 4 },
      { type: "Appointment", files: 1, count: 2 },
    ]);
    expect(fileName(manifest.output[2])).toBe("Patient-2.ndjson.sealed");
  });

  it("names the job and the refusal", () => {
    expect(jobIdOf("http://x/fhir/R4/$export-status/abc")).toBe("abc");
    expect(jobIdOf(null)).toBe("");
    const outcome = { resourceType: "OperationOutcome", issue: [{ diagnostics: "_type names Medication" }] };
    expect(outcomeText(outcome, 400)).toBe("_type names Medication");
    expect(outcomeText(null, 502)).toBe("The gateway answered 502.");
  });
});
