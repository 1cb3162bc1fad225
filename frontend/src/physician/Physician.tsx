// Physicians: their calendar (physician/Calendar), and the patient chart: the allergy
// banner and list, demographics with the age, the medication history, the encounters
// (whole notes, amendments and versions), recording an encounter and e-prescribing safely
// (physician/Prescribe). Without a care relationship the API answers 403 naming
// break-glass: the chart offers it. Unsaved work is kept through a lock (drafts.ts).
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";

import { age } from "../shared/age";
import { ApiError, must } from "../shared/api/client";
import { useApp, useDirectory } from "../shared/context";
import { DemographicsCard } from "../shared/Demographics";
import { fullName } from "../shared/patients";
import { PatientSearch } from "../shared/PatientSearch";
import { when } from "../shared/time";
import { Field, field, Status, useAction } from "../shared/ui";
import { AllergyBanner, AllergyPanel } from "./Allergies";
import { MyCalendar } from "./Calendar";
import { EncounterList, RecordEncounter } from "./Encounters";
import { MedicationHistory } from "./Medications";
import { Prescribe } from "./Prescribe";
import type { AllergyList, Summary } from "./types";
import { VerifyBox } from "./VerifyBox";
import { writeOnce } from "../shared/submit";

/** What a change on the chart touched (only that is read again). */
type Part = "encounters" | "allergies" | "prescriptions";

/** Which chart to open: `n` counts the requests, so opening the same patient again reloads it. */
export interface ChartRequest {
  patientId: string;
  n: number;
}

export function Physician(props: {
  tab: string;
  chart: ChartRequest;
  onOpenChart: (patientId: string) => void;
}): ReactNode {
  if (props.tab === "Calendar") return <MyCalendar onOpen={props.onOpenChart} />;
  return <Chart request={props.chart} onOpen={props.onOpenChart} />;
}

/** The last chart request whose heading took the focus: the chart kept open and shown again
 * when the section comes back (the Chart mounted anew) is not announced again. */
const announced = { n: -1 };

function Chart({ request, onOpen }: { request: ChartRequest; onOpen: (patientId: string) => void }): ReactNode {
  const { session } = useApp();
  const open = useAction();
  const glass = useAction();
  const refresh = useAction();
  const [summary, setSummary] = useState<Summary | null>(null);
  const [allergies, setAllergies] = useState<AllergyList | null>(null);
  /** Bumped when the prescriptions changed (the history reads them again)… */
  const [rxGeneration, setRxGeneration] = useState(0);
  /** …and when the allergies or prescriptions changed (a safety check shown is checked again). */
  const [checkGeneration, setCheckGeneration] = useState(0);
  const [refused, setRefused] = useState<string | null>(null);

  const readSummary = useCallback(
    (id: string): Promise<Summary> =>
      must(session.api.GET("/api/v1/patients/{patient_id}/summary", { params: { path: { patient_id: id } } })),
    [session],
  );
  /** The patient last asked for: an answer about an earlier one, arriving late, is dropped. */
  const wanted = useRef("");
  const readAllergies = useCallback(
    (id: string): Promise<AllergyList> =>
      must(
        session.api.GET("/api/v1/patients/{patient_id}/allergies", {
          params: { path: { patient_id: id }, query: { include_inactive: true } },
        }),
      ),
    [session],
  );
  const load = useCallback(
    async (id: string) => {
      wanted.current = id;
      setRefused(null);
      try {
        const [chart, list] = await Promise.all([readSummary(id), readAllergies(id)]);
        if (wanted.current !== id) return;
        setSummary(chart);
        setAllergies(list);
        setRxGeneration((g) => g + 1);
        setCheckGeneration((g) => g + 1);
      } catch (exc) {
        if (wanted.current !== id) return;
        setSummary(null);
        setAllergies(null);
        if (
          exc instanceof ApiError &&
          exc.status === 403 &&
          (exc.details as { break_glass?: boolean } | null)?.break_glass
        ) {
          setRefused(id);
        }
        throw exc;
      }
    },
    [readSummary, readAllergies],
  );
  /** The patient whose chart was asked for (not one read again): focus goes to its heading
   * once that chart, not the one still shown before it, is on screen. */
  const announce = useRef("");
  useEffect(() => {
    // Another patient: nothing said about the previous one applies any more.
    glass.clear();
    refresh.clear();
    // asked for now (not the chart kept open, shown again when the section comes back)
    announce.current = request.n !== announced.n ? request.patientId : "";
    announced.n = request.n;
    if (request.patientId) void open.run(() => load(request.patientId));
  }, [request.patientId, request.n, load]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    if (!summary || !announce.current || summary.patient.patient_id !== announce.current) return;
    announce.current = "";
    const on = document.activeElement;
    if (on instanceof HTMLInputElement || on instanceof HTMLTextAreaElement || on instanceof HTMLSelectElement) {
      return; // never taken from a field the user is typing in meanwhile
    }
    // (not "chart-title": that is the patient search's heading, prefix "chart")
    document.getElementById("patient-chart-title")?.focus();
  }, [summary]);

  // After a change, only what it changed is read again (patient-data reads are rate-limited);
  // a failure keeps the chart shown and says why above it.
  const patientId = summary?.patient.patient_id ?? "";
  const runRefresh = refresh.run;
  const changed = useCallback(
    (...what: Part[]) =>
      runRefresh(async () => {
        if (what.includes("prescriptions")) setRxGeneration((g) => g + 1);
        if (what.some((w) => w !== "encounters")) setCheckGeneration((g) => g + 1);
        if (what.includes("encounters")) {
          const chart = await readSummary(patientId);
          if (wanted.current === patientId) setSummary(chart);
        }
        if (what.includes("allergies")) {
          const list = await readAllergies(patientId);
          if (wanted.current === patientId) setAllergies(list);
        }
      }),
    [runRefresh, patientId, readSummary, readAllergies],
  );

  return (
    <>
      <PatientSearch
        prefix="chart"
        actions={(p) => (
          <button className="secondary" onClick={() => onOpen(p.patient_id)}>
            Open chart
          </button>
        )}
      />
      <VerifyBox />
      <Status action={open} busyText="Opening the chart…" />
      {refused && (
        <section className="warning" aria-labelledby="bg-title">
          <h2 id="bg-title">Emergency access (break-glass)</h2>
          <p>
            You have no care relationship with this patient. In an emergency you may open the chart anyway: the access
            is time-limited, audited as emergency treatment and reported to the administrators.
          </p>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              const reason = field(e.currentTarget, "emergency_reason");
              const id = refused;
              void glass.run(async () => {
                const grant = await writeOnce(
                  "/api/v1/patients/{patient_id}/break-glass",
                  {
                    params: { path: { patient_id: id } },
                    body: { reason },
                  },
                  (o) => must(session.api.POST("/api/v1/patients/{patient_id}/break-glass", o)),
                );
                open.clear();
                await load(id);
                return `Emergency access open until ${when(grant.expires_at)}; it is reported to the administrators.`;
              });
            }}
          >
            <Field label="Reason for emergency access" name="emergency_reason" required minLength={5} action={glass} />
            <button className="danger" disabled={glass.busy}>
              Break the glass and open the chart
            </button>
          </form>
        </section>
      )}
      <Status action={glass} />
      <Status action={refresh} />
      {summary && (
        <PatientChart
          key={summary.patient.patient_id}
          summary={summary}
          allergies={allergies}
          rxGeneration={rxGeneration}
          checkGeneration={checkGeneration}
          onChanged={changed}
        />
      )}
    </>
  );
}

function PatientChart(props: {
  summary: Summary;
  allergies: AllergyList | null;
  rxGeneration: number;
  checkGeneration: number;
  onChanged: (...what: Part[]) => Promise<void>;
}): ReactNode {
  const { session } = useApp();
  const directory = useDirectory(session);
  const { summary, onChanged } = props;
  const p = summary.patient;
  const active = props.allergies?.allergies.filter((a) => a.status === "active") ?? summary.allergies;
  return (
    <>
      <section aria-label="Chart">
        <h2 id="patient-chart-title" tabIndex={-1}>
          {fullName(p.demographics)}, <span className="age">{age(p.demographics.date_of_birth)}</span>{" "}
          <small>({p.mrn})</small>
        </h2>
        <AllergyBanner allergies={active} />
        <DemographicsCard patient={p} titled={false} />
        {p.clinical_flags && p.clinical_flags.length > 0 && (
          <p className="warn">Alerts: {p.clinical_flags.map((f) => f.replace(/_/g, " ")).join(", ")}</p>
        )}
        <AllergyPanel
          patientId={p.patient_id}
          list={props.allergies}
          name={directory.name}
          onChanged={() => onChanged("allergies")}
        />
        <MedicationHistory
          patient={p}
          allergies={props.allergies?.allergies ?? summary.allergies}
          generation={props.rxGeneration}
          name={directory.name}
          onChanged={() => onChanged("prescriptions")}
        />
        <EncounterList
          patientId={p.patient_id}
          encounters={summary.encounters}
          name={directory.name}
          onChanged={() => onChanged("encounters")}
        />
      </section>
      <RecordEncounter patientId={p.patient_id} onDone={() => onChanged("encounters")} />
      <Prescribe
        summary={summary}
        allergies={active}
        generation={props.checkGeneration}
        onDone={() => onChanged("prescriptions")}
        onStale={() => onChanged("allergies", "prescriptions")}
      />
    </>
  );
}
