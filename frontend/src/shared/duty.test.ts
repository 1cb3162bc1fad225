import { afterEach, describe, expect, it } from "vitest";

import type { DutyStatus } from "./api/types";
import { dutyText } from "./duty";
import { setClinicZone } from "./time";

afterEach(() => setClinicZone("UTC"));

const base: DutyStatus = { account_id: "a1", on_duty: false, required: true };

describe("the on-duty state in words", () => {
  it("says since when, in the clinic's time, and where", () => {
    setClinicZone("Europe/Berlin");
    expect(dutyText({ ...base, on_duty: true, since: "2026-12-03T07:02:00Z", place: "Ward 3" })).toBe(
      "On duty since 08:02 (Ward 3)",
    );
    expect(dutyText({ ...base, on_duty: true, since: "2026-12-03T07:02:00Z" })).toBe("On duty since 08:02");
  });

  it("says when the last shift ended, or only that one is off duty", () => {
    setClinicZone("Europe/Berlin");
    expect(dutyText({ ...base, checked_out_at: "2026-12-03T16:02:00Z" })).toBe("Off duty since Thu 3 Dec, 17:02");
    expect(dutyText(base)).toBe("Off duty");
  });
});
