// The week views as WAI-ARIA grids: one row of day cells with a roving tabindex. Tab
// reaches the grid once (the active cell: today's or the chosen day at first), arrow keys
// move between days (Left/Right, Home/End; Up/Down: a week earlier/later is another
// screen, so they stay with the cell), Enter or Space opens the day (the cell's first
// button) and Tab then goes through the active cell's own controls only, never through
// every booking of the week.
import { useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";

const CONTROLS = "button, a[href], input, select, textarea, [tabindex]:not([role='gridcell'])";

/** The cell the key moves to from `index` of `count` (null: not a key the grid takes). */
export function nextCell(key: string, index: number, count: number): number | null {
  if (count <= 0) return null;
  if (key === "ArrowRight") return Math.min(index + 1, count - 1);
  if (key === "ArrowLeft") return Math.max(index - 1, 0);
  if (key === "Home") return 0;
  if (key === "End") return count - 1;
  return null;
}

export interface GridCellProps {
  role: "gridcell";
  tabIndex: number;
  ref: (element: HTMLElement | null) => void;
  onKeyDown: (event: KeyboardEvent<HTMLElement>) => void;
  onFocus: () => void;
  "aria-selected"?: boolean;
}

/** Roving focus over `count` cells; `initial` is the cell that takes Tab at first (and
 * whenever it changes, e.g. another week or day chosen). */
export function useRovingGrid(count: number, initial: number): (index: number) => GridCellProps {
  // the chosen cell, for as long as `initial` stays what it was when it was chosen
  const [chosen, setChosen] = useState({ initial, active: initial });
  const active = chosen.initial === initial ? chosen.active : initial;
  const setActive = (index: number): void => setChosen({ initial, active: index });
  const cells = useRef<(HTMLElement | null)[]>([]);
  const current = Math.min(Math.max(active, 0), Math.max(count - 1, 0));
  // Only the active cell's own controls are in the Tab order (set after every render:
  // the cells' contents change with the bookings).
  useLayoutEffect(() => {
    cells.current.slice(0, count).forEach((cell, index) => {
      cell?.querySelectorAll<HTMLElement>(CONTROLS).forEach((control) => {
        if (index === current) control.removeAttribute("tabindex");
        else control.tabIndex = -1;
      });
    });
  });
  return (index) => ({
    role: "gridcell",
    tabIndex: index === current ? 0 : -1,
    ref: (element) => {
      cells.current[index] = element;
    },
    onFocus: () => setActive(index),
    onKeyDown: (event) => {
      if (event.target !== event.currentTarget) return; // keys on a cell's controls are theirs
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        event.currentTarget.querySelector<HTMLElement>("button")?.click();
        return;
      }
      const next = nextCell(event.key, index, count);
      if (next === null) return;
      event.preventDefault();
      setActive(next);
      cells.current[next]?.focus();
    },
  });
}

/** What a day cell says first to a screen reader, after its date ("2 appointments",
 * "no appointments"; a day off, an absence): the cell's name is its content (axe: a name
 * must hold the visible text), so the bookings themselves follow, each with its time and
 * patient. */
export function cellSummary(count: number, extra: string[] = []): string {
  const held = count ? `${count} appointment${count === 1 ? "" : "s"}` : "no appointments";
  return [held, ...extra].join(", ");
}

/** One Tab stop for a group of buttons (a day's free times): arrow keys (and Home/End)
 * move between them, Tab goes on past the group. The stop is the pressed button (the
 * chosen time) or else the one last focused, or the first. */
export function useRovingButtons(): {
  ref: (element: HTMLElement | null) => void;
  onKeyDown: (event: KeyboardEvent<HTMLElement>) => void;
  onFocus: (event: { target: EventTarget }) => void;
} {
  const box = useRef<HTMLElement | null>(null);
  const last = useRef(0);
  const buttons = (): HTMLElement[] =>
    box.current ? [...box.current.querySelectorAll<HTMLElement>("button:not(:disabled)")] : [];
  const mark = (stop: number): void =>
    buttons().forEach((b, i) => {
      b.tabIndex = i === stop ? 0 : -1;
    });
  useLayoutEffect(() => {
    const all = buttons();
    const pressed = all.findIndex((b) => b.getAttribute("aria-pressed") === "true");
    const stop = pressed >= 0 ? pressed : Math.min(last.current, Math.max(all.length - 1, 0));
    last.current = stop;
    mark(stop);
  });
  return {
    ref: (element) => {
      box.current = element;
    },
    onFocus: (event) => {
      const index = buttons().indexOf(event.target as HTMLElement);
      if (index >= 0) {
        last.current = index;
        mark(index);
      }
    },
    onKeyDown: (event) => {
      const all = buttons();
      const index = all.indexOf(event.target as HTMLElement);
      if (index < 0) return;
      const key = event.key === "ArrowDown" ? "ArrowRight" : event.key === "ArrowUp" ? "ArrowLeft" : event.key;
      const next = nextCell(key, index, all.length);
      if (next === null) return;
      event.preventDefault();
      all[next].focus();
    },
  };
}
