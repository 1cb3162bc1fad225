// An appointment's status in words, the same on the desk's and the physician's screens.
import type { Appointment, AppointmentStatus } from "./api/types";

export const STATUS_TEXT: Record<AppointmentStatus, string> = {
  booked: "booked",
  arrived: "arrived",
  in_progress: "in progress",
  completed: "done",
  no_show: "no-show",
  cancelled: "cancelled",
};

/** "cancelled: Patient called to cancel", "no-show", "arrived". */
export function statusText(a: Appointment): string {
  const what = STATUS_TEXT[a.status] ?? a.status;
  return a.status === "cancelled" && a.cancellation_reason ? `${what}: ${a.cancellation_reason}` : what;
}

/** Still taking up the time (not cancelled). */
export function holdsTime(a: Appointment): boolean {
  return a.status !== "cancelled";
}
