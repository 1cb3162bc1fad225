// The front desk's patients: register (warned of a near-duplicate, with the records' names:
// names that sound alike and the same birth date), find (spelling-tolerant name and birth
// date, phone in any notation, record number), the recently seen, and the demographics,
// read and edited (insurance, emergency contact) with the version read.
import { useCallback, useEffect, useState, type ReactNode } from "react";

import { ApiError, must } from "../shared/api/client";
import type { Demographics, Patient, PatientBrief } from "../shared/api/types";
import { useApp } from "../shared/context";
import {
  DemographicsCard,
  DemographicsFields,
  demographicsOf,
  draftOfDemographics,
  emptyDemographics,
  type DemographicsDraft,
} from "../shared/Demographics";
import { useDraft } from "../shared/drafts";
import { fullName } from "../shared/patients";
import { PatientSearch, PatientTable } from "../shared/PatientSearch";
import { Status, useAction } from "../shared/ui";
import { idempotent, submitOnce, writeOnce } from "../shared/submit";

type Existing = PatientBrief;

export function toBrief(p: Patient): PatientBrief {
  const d = p.demographics;
  return {
    patient_id: p.patient_id,
    mrn: p.mrn,
    given_name: d.given_name,
    family_name: d.family_name,
    date_of_birth: d.date_of_birth,
    sex: d.sex,
  };
}

export function Patients({ onBook }: { onBook: (patient: PatientBrief) => void }): ReactNode {
  const { session } = useApp();
  const show = useAction();
  const recent = useAction();
  const [shown, setShown] = useState<Patient | null>(null);
  const [editing, setEditing] = useState(false);
  const [recentList, setRecentList] = useState<PatientBrief[] | null>(null);

  const loadRecent = useCallback(async () => {
    setRecentList((await must(session.api.GET("/api/v1/patients", { params: { query: { limit: 20 } } }))).patients);
  }, [session]);
  const { run: runRecent } = recent;
  useEffect(() => void runRecent(loadRecent), [runRecent, loadRecent]);

  const open = (patientId: string): void =>
    void show.run(async () => {
      setEditing(false);
      setShown(
        await must(session.api.GET("/api/v1/patients/{patient_id}", { params: { path: { patient_id: patientId } } })),
      );
    });
  const actions = (p: PatientBrief): ReactNode => (
    <div className="buttons">
      <button className="secondary" onClick={() => open(p.patient_id)}>
        Demographics
      </button>
      <button className="secondary" onClick={() => onBook(p)}>
        Book
      </button>
    </div>
  );

  return (
    <>
      <Register onBook={onBook} onOpen={open} onRegistered={() => void loadRecent().catch(() => undefined)} />
      <PatientSearch phone actions={actions} />
      <Status action={show} />
      {shown && !editing && (
        <DemographicsCard patient={shown} onClose={() => setShown(null)} onEdit={() => setEditing(true)}>
          <p>
            <button className="secondary" onClick={() => onBook(toBrief(shown))}>
              Book an appointment for {fullName(shown.demographics)}
            </button>
          </p>
        </DemographicsCard>
      )}
      {shown && editing && (
        <EditDemographics
          patient={shown}
          onDone={(saved) => {
            setEditing(false);
            if (saved) setShown(saved);
            void loadRecent().catch(() => undefined);
          }}
        />
      )}
      <section aria-labelledby="recent-title">
        <h2 id="recent-title">Recently seen</h2>
        <p className="hint">Patients registered, edited, booked or read most recently.</p>
        <Status action={recent} />
        <PatientTable label="Recently seen patients" rows={recentList} actions={actions} empty="No patients yet." />
      </section>
    </>
  );
}

function Register(props: {
  onBook: (patient: PatientBrief) => void;
  onOpen: (patientId: string) => void;
  onRegistered: () => void;
}): ReactNode {
  const { session } = useApp();
  const register = useAction();
  const [draft, setDraft, discard] = useDraft<DemographicsDraft>("patient:new", emptyDemographics);
  const [duplicate, setDuplicate] = useState<{ demographics: Demographics; existing: Existing[] } | null>(null);
  const [registered, setRegistered] = useState<Patient | null>(null);

  async function create(demographics: Demographics, confirm: boolean): Promise<string> {
    try {
      // One registration, one key: a double click or a retry registers the patient once.
      const body = { demographics, confirm_duplicate: confirm };
      const written = await submitOnce(
        "patient:new",
        body,
        () => body,
        (b, key) => must(session.api.POST("/api/v1/patients", { body: b, headers: idempotent(key) })),
      );
      setDuplicate(null);
      discard();
      const patient = await must(
        session.api.GET("/api/v1/patients/{patient_id}", { params: { path: { patient_id: written.patient_id } } }),
      );
      setRegistered(patient);
      props.onRegistered();
      return `Registered ${fullName(patient.demographics)}: record number ${patient.mrn}.`;
    } catch (exc) {
      const details =
        exc instanceof ApiError ? (exc.details as { reason?: string; existing?: Existing[] } | null) : null;
      if (exc instanceof ApiError && exc.status === 409 && details?.reason === "possible_duplicate") {
        setDuplicate({ demographics, existing: details.existing ?? [] });
        return "";
      }
      throw exc;
    }
  }

  return (
    <section aria-labelledby="register-patient-title">
      <h2 id="register-patient-title">Register a patient</h2>
      <form
        className="grid-form"
        onSubmit={(e) => {
          e.preventDefault();
          setRegistered(null);
          const demographics = demographicsOf(draft);
          void register.run(() => create(demographics, false));
        }}
      >
        <DemographicsFields draft={draft} onChange={setDraft} action={register} />
        <div className="buttons wide">
          <button disabled={register.busy}>{register.busy ? "Registering…" : "Register patient"}</button>
          <button type="button" className="secondary" onClick={() => (discard(), register.clear(), setDuplicate(null))}>
            Clear the form
          </button>
        </div>
      </form>
      <Status action={register} />
      {duplicate && (
        <div className="warning" role="alert" aria-label="Possible duplicate">
          <p>
            <strong>Possible duplicate:</strong> {duplicate.existing.length === 1 ? "a patient" : "patients"} with a
            name that sounds like {fullName(duplicate.demographics)}, born {duplicate.demographics.date_of_birth},{" "}
            {duplicate.existing.length === 1 ? "is" : "are"} already registered. Use the existing record, unless this is
            a different person.
          </p>
          <ul className="plain" aria-label="Existing records">
            {duplicate.existing.map((x) => (
              <li key={x.patient_id}>
                <strong>{fullName(x)}</strong>, born {x.date_of_birth}, {x.sex}, record {x.mrn}{" "}
                <button className="secondary" onClick={() => (setDuplicate(null), props.onOpen(x.patient_id))}>
                  Open this record
                </button>{" "}
                <button className="secondary" onClick={() => (setDuplicate(null), props.onBook(x))}>
                  Book for this patient
                </button>
              </li>
            ))}
          </ul>
          <button
            className="danger"
            disabled={register.busy}
            onClick={() => void register.run(() => create(duplicate.demographics, true))}
          >
            This is a different person: register anyway
          </button>{" "}
          <button className="secondary" onClick={() => setDuplicate(null)}>
            Cancel
          </button>
        </div>
      )}
      {registered && (
        <p>
          <button className="secondary" onClick={() => props.onBook(toBrief(registered))}>
            Book an appointment for {fullName(registered.demographics)}
          </button>
        </p>
      )}
    </section>
  );
}

function EditDemographics({
  patient,
  onDone,
}: {
  patient: Patient;
  onDone: (saved: Patient | null) => void;
}): ReactNode {
  const { session } = useApp();
  const save = useAction();
  const [draft, setDraft, discard] = useDraft<DemographicsDraft>(`patient:edit:${patient.patient_id}`, () =>
    draftOfDemographics(patient.demographics),
  );
  return (
    <section aria-labelledby="edit-patient-title" className="card">
      <h2 id="edit-patient-title">
        Edit {fullName(patient.demographics)} <small>({patient.mrn})</small>
      </h2>
      <form
        className="grid-form"
        onSubmit={(e) => {
          e.preventDefault();
          const demographics = demographicsOf(draft);
          void save.run(async () => {
            await writeOnce(
              "/api/v1/patients/{patient_id}",
              {
                params: { path: { patient_id: patient.patient_id } },
                body: { expected_version: patient.version, demographics },
              },
              (o) => must(session.api.PUT("/api/v1/patients/{patient_id}", o)),
            );
            discard();
            const saved = await must(
              session.api.GET("/api/v1/patients/{patient_id}", {
                params: { path: { patient_id: patient.patient_id } },
              }),
            );
            onDone(saved);
          });
        }}
      >
        <DemographicsFields draft={draft} onChange={setDraft} action={save} />
        <div className="buttons wide">
          <button disabled={save.busy}>{save.busy ? "Saving…" : "Save changes"}</button>
          <button type="button" className="secondary" onClick={() => (discard(), onDone(null))}>
            Discard changes
          </button>
        </div>
      </form>
      <Status action={save} />
    </section>
  );
}
