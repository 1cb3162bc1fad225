// Receptionists: today's arrivals (Today), patients (register, find, recently seen, edit),
// the physicians' calendars (book, reschedule, cancel: Booking) and their working time.
import { useState, type ReactNode } from "react";

import type { PatientBrief } from "../shared/api/types";
import { clinicToday } from "../shared/time";
import { Booking } from "./Booking";
import { Patients } from "./Patients";
import { Today } from "./Today";
import { WorkingTime } from "./WorkingTime";

export const RECEPTION_TABS = ["Patients", "Today", "Calendar", "Working time"];

export function Reception({ tab, go }: { tab: string; go: (tab: string) => void }): ReactNode {
  const [patient, setPatient] = useState<PatientBrief | null>(null);
  /** The physician chosen on the calendar and the working time (the same on both). */
  const [physician, setPhysician] = useState("");
  /** The day the calendar shows (kept while the desk looks at other sections). */
  const [day, setDay] = useState(clinicToday);
  if (tab === "Patients")
    return (
      <Patients
        onBook={(p) => {
          setPatient(p);
          go("Calendar");
        }}
      />
    );
  if (tab === "Today") return <Today />;
  if (tab === "Working time") return <WorkingTime physician={physician} onPhysician={setPhysician} />;
  return (
    <Booking
      patient={patient}
      onPatient={setPatient}
      physician={physician}
      onPhysician={setPhysician}
      day={day}
      onDay={setDay}
    />
  );
}
