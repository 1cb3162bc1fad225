import { afterEach, describe, expect, it } from "vitest";

import { clock, dayIn, instantOf, setClinicZone, when } from "./time";

afterEach(() => setClinicZone("UTC"));

describe("times in the clinic's zone", () => {
  it("are shown in the clinic's zone, not the browser's", () => {
    setClinicZone("Europe/Berlin");
    expect(clock("2026-12-03T09:00:00+00:00")).toBe("10:00");
    expect(when("2026-12-03T09:00:00Z")).toBe("Thu 3 Dec, 10:00");
    expect(dayIn(new Date("2026-12-03T23:30:00Z"))).toBe("2026-12-04");
    setClinicZone("America/New_York");
    expect(clock("2026-12-03T09:00:00Z")).toBe("04:00");
  });

  it("read a wall-clock time typed in the clinic's zone as the instant it is (DST too)", () => {
    expect(instantOf("2026-12-03T10:00", "Europe/Berlin")).toBe("2026-12-03T09:00:00.000Z");
    expect(instantOf("2026-07-03T10:00", "Europe/Berlin")).toBe("2026-07-03T08:00:00.000Z");
    expect(instantOf("2026-07-03T10:00", "UTC")).toBe("2026-07-03T10:00:00.000Z");
  });
});
