// Unsaved work kept in memory across a lock (auto-lock or Lock): the workspace is unmounted
// and the key dropped, but what a user was writing is back after they unlock. Only this
// module's memory holds it: never localStorage, sessionStorage or IndexedDB (no patient
// data at rest in the browser), so a reload or a closed tab loses it, and the app asks
// first (beforeunload) while anything is unsaved.
import { useCallback, useLayoutEffect, useRef, useState } from "react";

interface Entry {
  value: unknown;
  /** Unsaved work (differs from the empty form), as opposed to a remembered view state. */
  unsaved: boolean;
}

export class DraftStore {
  #entries = new Map<string, Entry>();

  get<T>(key: string): T | undefined {
    return this.#entries.get(key)?.value as T | undefined;
  }

  put(key: string, value: unknown, unsaved: boolean): void {
    this.#entries.set(key, { value, unsaved });
  }

  drop(key: string): void {
    this.#entries.delete(key);
  }

  /** Keys of the drafts holding unsaved work. */
  unsaved(): string[] {
    return [...this.#entries].filter(([, entry]) => entry.unsaved).map(([key]) => key);
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** The app's one store (module memory: it outlives the unmounted workspace, not the page). */
export const drafts = new DraftStore();

export function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

type Update<T> = T | ((current: T) => T);

function useStored<T>(key: string, initial: () => T, tracked: boolean): [T, (next: Update<T>) => void, () => void] {
  const initialRef = useRef(initial);
  const [state, setState] = useState<{ key: string; value: T }>(() => ({
    key,
    value: drafts.get<T>(key) ?? initial(),
  }));
  let current = state;
  if (state.key !== key) {
    // Another draft (another patient, encounter …): take its own saved value.
    current = { key, value: drafts.get<T>(key) ?? initial() };
    setState(current);
  }
  const latest = useRef(current);
  // What update() and discard() start from: the latest, once rendered.
  useLayoutEffect(() => {
    initialRef.current = initial;
    latest.current = current;
  });
  const update = useCallback(
    (next: Update<T>) => {
      const base = latest.current.key === key ? latest.current.value : (drafts.get<T>(key) ?? initialRef.current());
      const value = typeof next === "function" ? (next as (current: T) => T)(base) : next;
      drafts.put(key, value, tracked && !same(value, initialRef.current()));
      latest.current = { key, value };
      setState({ key, value });
    },
    [key, tracked],
  );
  const discard = useCallback(() => {
    drafts.drop(key);
    const value = initialRef.current();
    latest.current = { key, value };
    setState({ key, value });
  }, [key]);
  return [current.value, update, discard];
}

/** A form's unsaved work under `key`: kept through a lock; `discard()` once it is saved. */
export function useDraft<T>(key: string, initial: () => T): [T, (next: Update<T>) => void, () => void] {
  return useStored(key, initial, true);
}

/** View state worth finding again after unlocking (the chart that was open), not unsaved work. */
export function useKept<T>(key: string, initial: () => T): [T, (next: Update<T>) => void] {
  const [value, update] = useStored(key, initial, false);
  return [value, update];
}
