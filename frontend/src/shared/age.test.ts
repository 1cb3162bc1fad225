import { describe, expect, it } from "vitest";

import { ageOn } from "./age";

describe("a patient's age", () => {
  it("is in years from two years on, counting the birthday itself", () => {
    expect(ageOn("1971-11-02", "2026-11-01")).toBe("54 years");
    expect(ageOn("1971-11-02", "2026-11-02")).toBe("55 years");
    expect(ageOn("2024-01-15", "2026-01-15")).toBe("2 years");
  });

  it("is in months for infants and toddlers under two", () => {
    expect(ageOn("2024-01-15", "2026-01-14")).toBe("23 months");
    expect(ageOn("2025-10-20", "2026-03-19")).toBe("4 months");
    expect(ageOn("2026-02-10", "2026-03-10")).toBe("1 month");
  });

  it("is in days for the newborn", () => {
    expect(ageOn("2026-02-20", "2026-03-05")).toBe("13 days");
    expect(ageOn("2026-03-04", "2026-03-05")).toBe("1 day");
    expect(ageOn("2026-03-05", "2026-03-05")).toBe("newborn");
  });

  it("says nothing for a birth date after the day or not a date", () => {
    expect(ageOn("2026-03-06", "2026-03-05")).toBe("");
    expect(ageOn("unknown", "2026-03-05")).toBe("");
  });
});
