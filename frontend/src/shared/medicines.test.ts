import { describe, expect, it } from "vitest";

import type { Medicine } from "./api/types";
import { ingredientsOf } from "./medicines";

const medicine = (ingredients: string[]): Medicine =>
  ({
    medicine_id: "m1",
    ingredients,
    classes: [],
    details: { name: "Augmentin", active_ingredient: "amoxicillin/clavulanic acid" },
  }) as unknown as Medicine;

describe("a catalog medicine's ingredients", () => {
  it("are the ingredients the vocabulary resolved, joined as the caller says", () => {
    expect(ingredientsOf(medicine(["amoxicillin", "clavulanic acid"]), " + ")).toBe("amoxicillin + clavulanic acid");
    expect(ingredientsOf(medicine(["amoxicillin", "clavulanic acid"]), ", ")).toBe("amoxicillin, clavulanic acid");
  });

  it("are its active ingredient as written when none was resolved", () => {
    expect(ingredientsOf(medicine([]), " + ")).toBe("amoxicillin/clavulanic acid");
  });
});
