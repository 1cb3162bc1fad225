import { describe, expect, it } from "vitest";

import { nextCell } from "./grid";

describe("arrow keys in a week grid", () => {
  it("move between the seven days and stop at the edges", () => {
    expect(nextCell("ArrowRight", 2, 7)).toBe(3);
    expect(nextCell("ArrowLeft", 2, 7)).toBe(1);
    expect(nextCell("ArrowRight", 6, 7)).toBe(6);
    expect(nextCell("ArrowLeft", 0, 7)).toBe(0);
    expect(nextCell("Home", 4, 7)).toBe(0);
    expect(nextCell("End", 1, 7)).toBe(6);
  });

  it("leave every other key to the page (Tab, letters, Up/Down)", () => {
    for (const key of ["Tab", "a", "ArrowUp", "ArrowDown", "Escape"]) expect(nextCell(key, 3, 7)).toBeNull();
    expect(nextCell("ArrowRight", 0, 0)).toBeNull();
  });
});
