import { describe, expect, it } from "vitest";

import { DraftStore, same } from "./drafts";

describe("drafts kept in memory through a lock", () => {
  it("keeps values by key and tells unsaved work from remembered view state", () => {
    const store = new DraftStore();
    store.put("encounter:p1", { chief_complaint: "Cough" }, true);
    store.put("chart:open", { patientId: "p1", n: 1 }, false);
    expect(store.get("encounter:p1")).toEqual({ chief_complaint: "Cough" });
    expect(store.unsaved()).toEqual(["encounter:p1"]);
    store.put("encounter:p1", { chief_complaint: "" }, false); // back to the empty form
    expect(store.unsaved()).toEqual([]);
    store.drop("chart:open");
    expect(store.get("chart:open")).toBeUndefined();
    store.clear();
    expect(store.get("encounter:p1")).toBeUndefined();
  });

  it("compares drafts by value", () => {
    expect(same({ a: [1, { b: "x" }] }, { a: [1, { b: "x" }] })).toBe(true);
    expect(same({ a: "1" }, { a: 1 })).toBe(false);
  });
});
