// The unlocked app every screen lives in: the session (and its signed API client), who is
// signed in, the live channel, and the staff directory.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";

import { must, type Api, type Session } from "./api/client";
import type { Me, Role, StaffEntry } from "./api/types";
import { describe } from "./problems";
import { type Live, type LiveEvent, RECONNECTED } from "./live";

export interface Context {
  session: Session;
  me: Me;
  live: Live;
}

export const AppContext = createContext<Context | null>(null);

export function useApp(): Context {
  const context = useContext(AppContext);
  if (!context) throw new Error("outside the unlocked app");
  return context;
}

/** The signed API client of the unlocked session. */
export function useApi(): Api {
  return useApp().session.api;
}

/** Live events whose type starts with one of the prefixes. */
export function useLive(prefixes: string[], listener: (event: LiveEvent) => void): void {
  const { live } = useApp();
  const key = prefixes.join(",");
  useEffect(
    () =>
      live.subscribe((event) => {
        if (key.split(",").some((p) => event.type.startsWith(p))) listener(event);
      }),
    [live, key, listener],
  );
}

/** `reload` again whenever the live channel is back after a drop: what was booked, moved
 * or written while it was down is not pushed again, so every screen reads what it shows. */
export function useReconnected(reload: () => void): void {
  const { live } = useApp();
  useEffect(
    () =>
      live.subscribe((event) => {
        if (event.type === RECONNECTED) reload();
      }),
    [live, reload],
  );
}

export interface Directory {
  staff: StaffEntry[];
  /** Not read yet (the first read is under way): not the same as "nobody there". */
  loading: boolean;
  /** Why the last read failed ("" when it did not): never shown as an empty clinic. */
  error: string;
  /** A colleague's name; the whole id while it is not known. */
  name: (id: string) => string;
  reload: () => void;
}

/** Active colleagues (the staff directory): names for ids, physicians to book with. */
export function useDirectory(session: Session, role?: Role): Directory {
  const [staff, setStaff] = useState<StaffEntry[]>([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState("");
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let live = true;
    must(session.api.GET("/api/v1/directory", { params: { query: { role } } })).then(
      (d) => {
        if (!live) return;
        setStaff(d.staff);
        setError("");
        setLoading(false);
      },
      (exc: unknown) => {
        if (!live) return;
        setError(describe(exc)); // the colleagues known so far stay: never "nobody"
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [session, role, generation]);
  const name = useCallback((id: string): string => staff.find((s) => s.account_id === id)?.display_name ?? id, [staff]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  useReconnected(reload);
  return { staff, loading, error, name, reload };
}

/** The time now, again every `ms` (what may be done with an appointment changes with it). */
export function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
  return now;
}

/** The options of a physician picker: a pending or failed read is said as such, never as
 * "No physician registered yet" (that is only for a directory read that found nobody). */
export function PhysicianOptions({ directory }: { directory: Directory }): ReactNode {
  const { staff, loading, error } = directory;
  return (
    <>
      {staff.length === 0 && (
        <option value="">
          {loading
            ? "Loading the physicians…"
            : error
              ? "The physicians could not be loaded"
              : "No physician registered yet"}
        </option>
      )}
      {staff.map((p) => (
        <option key={p.account_id} value={p.account_id}>
          {p.display_name}
          {p.specialty ? ` (${p.specialty})` : ""}
        </option>
      ))}
    </>
  );
}

/** Why the physicians could not be read, where the picker is (an alert, with what to do). */
export function DirectoryError({ directory }: { directory: Directory }): ReactNode {
  if (!directory.error) return null;
  return (
    <p className="error" role="alert">
      The list of physicians could not be loaded: {directory.error} It is read again when the connection is back.
    </p>
  );
}

/** Read what a screen shows with `run(load)` (a `useAction`'s run): at first, whenever
 * `load` changes, and again when the live channel is back after a drop. */
export function useLoad(run: (action: () => Promise<string | void>) => Promise<void>, load: () => Promise<void>): void {
  useEffect(() => void run(load), [run, load]);
  useReconnected(useCallback(() => void run(load), [run, load]));
}
