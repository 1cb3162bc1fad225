// Attendance: whether a physician or receptionist is on duty (patient data is open to them
// only then, when the clinic requires it). The state is the auth service's; a check-in by
// the time clock or an administrator arrives live, so the badge changes without a reload.
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { must } from "./api/client";
import type { DutyStatus } from "./api/types";
import { useApp, useLive } from "./context";
import { clock, when } from "./time";

/** In words: "On duty since 08:02 (Ward 3)", "Off duty since 17:02", "Off duty". */
export function dutyText(duty: DutyStatus): string {
  const place = duty.place ? ` (${duty.place})` : "";
  if (duty.on_duty) return `On duty${duty.since ? ` since ${clock(duty.since)}` : ""}${place}`;
  if (duty.checked_out_at) return `Off duty since ${when(duty.checked_out_at)}`;
  return "Off duty";
}

/** The signed-in person's own duty state; null while unknown or for administrators. */
export function useMyDuty(): DutyStatus | null {
  const { me, session } = useApp();
  const [duty, setDuty] = useState<DutyStatus | null>(null);
  const bound = me.role === "physician" || me.role === "receptionist";
  const load = useCallback(() => {
    if (!bound) return;
    must(session.api.GET("/api/v1/me/attendance")).then(setDuty, () => setDuty(null));
  }, [bound, session]);
  useEffect(load, [load]);
  useLive(["attendance."], load);
  return duty;
}

/** The header's badge: shown only where the clinic binds access to attendance. */
export function DutyBadge(): ReactNode {
  const duty = useMyDuty();
  if (!duty || !duty.required) return null;
  return (
    <span
      className={duty.on_duty ? "duty on" : "duty off"}
      role="status"
      aria-live="polite"
      title={duty.on_duty ? "Patient data is open to you" : "Patient data is closed to you until you check in"}
    >
      {dutyText(duty)}
    </span>
  );
}
