// The medicine catalog physicians prescribe from: load the sample catalog (bundled into the
// app at build time from services/records/catalog_seed.json, posted entry by entry as
// `medihaven catalog seed` does), add, edit and retire medicines. Each entry names active
// ingredients the drug vocabulary knows, so allergies and interactions can be checked; the
// server says in words when one does not.
import { useCallback, useState, type ReactNode } from "react";

import sample from "../../../services/records/catalog_seed.json";
import { ApiError, must } from "../shared/api/client";
import type { Medicine, MedicineDetails, MedicineType } from "../shared/api/types";
import { useApp, useLoad } from "../shared/context";
import { DataTable } from "../shared/DataTable";
import { ingredientsOf } from "../shared/medicines";
import { DrugFormFields } from "../shared/MedicineFields";
import { describe } from "../shared/problems";
import { when } from "../shared/time";
import { bindTo, Field, Select, Status, TextArea, useAction, WordOptions, words, type Action } from "../shared/ui";
import { writeOnce } from "../shared/submit";

/** SAMPLE DATA for development and demonstrations, not clinical advice (its own notice). */
export const SAMPLE = sample as { notice: string; medicines: MedicineDetails[] };

const TYPES: MedicineType[] = [
  "analgesic",
  "antibiotic",
  "antiviral",
  "antifungal",
  "antihypertensive",
  "antidiabetic",
  "anticoagulant",
  "antihistamine",
  "bronchodilator",
  "corticosteroid",
  "lipid_lowering",
  "antidepressant",
  "gastrointestinal",
  "other",
];

export function Catalog(): ReactNode {
  const { session } = useApp();
  const list = useAction();
  const seed = useAction();
  const add = useAction();
  const [prefix, setPrefix] = useState("");
  const [type, setType] = useState<MedicineType | "">("");
  const [retired, setRetired] = useState(false);
  const [medicines, setMedicines] = useState<Medicine[] | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [retiring, setRetiring] = useState<string | null>(null);

  const load = useCallback(async () => {
    const query = { include_retired: retired, limit: 100 };
    // The catalog is searched by a prefix or a type: "everything" is each type in turn.
    const asks =
      prefix.trim() || type
        ? [{ ...query, prefix: prefix.trim(), type: type || null }]
        : TYPES.map((t) => ({ ...query, type: t }));
    const pages = await Promise.all(
      asks.map((q) => must(session.api.GET("/api/v1/catalog/medicines", { params: { query: q } }))),
    );
    const all = pages.flatMap((p) => p.medicines);
    all.sort(
      (a, b) => a.details.name.localeCompare(b.details.name) || a.details.strength.localeCompare(b.details.strength),
    );
    setMedicines(all);
  }, [session, prefix, type, retired]);
  const { run } = list;
  useLoad(run, load);

  const loadSample = (): void =>
    void seed.run(async () => {
      let added = 0;
      let present = 0;
      const failed: string[] = [];
      for (const details of SAMPLE.medicines) {
        try {
          await writeOnce("/api/v1/catalog/medicines", { body: { details } }, (o) =>
            must(session.api.POST("/api/v1/catalog/medicines", o)),
          );
          added += 1;
        } catch (exc) {
          if (exc instanceof ApiError && exc.status === 409) present += 1;
          else if (exc instanceof ApiError && exc.status === 422) failed.push(`${details.name}: ${describeAll(exc)}`);
          else throw exc;
        }
      }
      await load();
      const said = `Sample catalog loaded: ${added} added, ${present} already in the catalog.`;
      if (failed.length) throw new Error(`${said} Not added: ${failed.join(" ")}`);
      return said;
    });

  return (
    <>
      <section aria-labelledby="catalog-title">
        <h2 id="catalog-title">Medicine catalog</h2>
        <p>
          Physicians prescribe from this catalog. A new installation starts empty: load the sample catalog to try the
          system, then keep the clinic's own formulary here.
        </p>
        <div className="notice" role="note" aria-label="Sample catalog">
          <p>
            <strong>Sample data.</strong> {SAMPLE.notice} ({SAMPLE.medicines.length} medicines; entries already in the
            catalog are left as they are.)
          </p>
          <button className="secondary" onClick={loadSample} disabled={seed.busy}>
            {seed.busy ? "Loading the sample catalog…" : "Load the sample catalog"}
          </button>
        </div>
        <Status action={seed} />
        <div className="toolbar">
          <Field
            label="Name or active ingredient starts with"
            name="catalog_prefix"
            value={prefix}
            onChange={(e) => setPrefix(e.target.value)}
            autoComplete="off"
          />
          <Select
            label="Show type"
            name="catalog_type"
            value={type}
            onChange={(e) => setType(e.target.value as MedicineType | "")}
          >
            <option value="">every type</option>
            <WordOptions values={TYPES} />
          </Select>
          <label className="inline">
            <input type="checkbox" checked={retired} onChange={(e) => setRetired(e.target.checked)} /> Show retired
          </label>
        </div>
        <Status action={list} />
        <DataTable
          label="Medicines"
          rows={medicines}
          error={medicines === null ? list.error : undefined}
          rowKey={(m) => m.medicine_id}
          empty={prefix || type ? "No medicine matches." : "The catalog is empty."}
          rowProps={(m) => ({ className: m.active ? undefined : "gone" })}
          columns={[
            {
              header: "Medicine",
              cell: (m) => (
                <>
                  <strong>{m.details.name}</strong> {m.details.strength}
                  {m.details.default_instructions && <div className="hint">{m.details.default_instructions}</div>}
                </>
              ),
            },
            { header: "Form and route", cell: (m) => `${words(m.details.dosage_form)}, ${words(m.details.route)}` },
            { header: "Type", cell: (m) => words(m.details.type) },
            {
              header: "Ingredients",
              cell: (m) => (
                <>
                  {ingredientsOf(m, " + ")}
                  {m.classes.length > 0 && <div className="hint">{m.classes.join(", ")}</div>}
                </>
              ),
            },
            { header: "Status", cell: (m) => (m.active ? "active" : `retired (${when(m.updated_at)})`) },
            {
              header: "Actions",
              cell: (m) =>
                m.active && (
                  <div className="buttons">
                    <button
                      className="secondary"
                      onClick={() => setEditing(editing === m.medicine_id ? null : m.medicine_id)}
                    >
                      Edit
                    </button>
                    {retiring === m.medicine_id ? (
                      <span className="confirm" role="group" aria-label={`Retire ${m.details.name}?`}>
                        No new prescriptions of {m.details.name} {m.details.strength}; existing ones stay.{" "}
                        <button
                          className="danger"
                          onClick={() =>
                            void list.run(async () => {
                              await writeOnce(
                                "/api/v1/catalog/medicines/{medicine_id}/retire",
                                {
                                  params: { path: { medicine_id: m.medicine_id } },
                                },
                                (o) => must(session.api.POST("/api/v1/catalog/medicines/{medicine_id}/retire", o)),
                              );
                              setRetiring(null);
                              await load();
                              return `${m.details.name} ${m.details.strength} retired.`;
                            })
                          }
                        >
                          Yes, retire it
                        </button>{" "}
                        <button className="secondary" onClick={() => setRetiring(null)}>
                          Keep it
                        </button>
                      </span>
                    ) : (
                      <button className="secondary" onClick={() => setRetiring(m.medicine_id)}>
                        Retire…
                      </button>
                    )}
                  </div>
                ),
            },
          ]}
        />
        {editing && medicines?.find((m) => m.medicine_id === editing) && (
          <EditMedicine
            key={editing}
            medicine={medicines.find((m) => m.medicine_id === editing) as Medicine}
            onDone={async () => {
              setEditing(null);
              await load();
            }}
          />
        )}
      </section>
      <section aria-labelledby="add-medicine-title">
        <h2 id="add-medicine-title">Add a medicine</h2>
        <MedicineForm
          action={add}
          submit="Add medicine"
          onSubmit={async (details) => {
            await writeOnce("/api/v1/catalog/medicines", { body: { details } }, (o) =>
              must(session.api.POST("/api/v1/catalog/medicines", o)),
            );
            await load();
            return `${details.name} ${details.strength} added to the catalog.`;
          }}
        />
      </section>
    </>
  );
}

/** Every problem of a refusal, in words (for the sample catalog's summary). */
function describeAll(exc: ApiError): string {
  const details = Array.isArray(exc.details) ? (exc.details as { msg?: string }[]) : [];
  return (
    details
      .map((d) => d.msg)
      .filter(Boolean)
      .join(" ") || describe(exc)
  );
}

function EditMedicine({ medicine, onDone }: { medicine: Medicine; onDone: () => Promise<void> }): ReactNode {
  const { session } = useApp();
  const action = useAction();
  return (
    <div className="card" role="region" aria-label={`Edit ${medicine.details.name}`}>
      <h3>
        Edit {medicine.details.name} {medicine.details.strength}
      </h3>
      <MedicineForm
        action={action}
        initial={medicine.details}
        submit="Save changes"
        onSubmit={async (details) => {
          await writeOnce(
            "/api/v1/catalog/medicines/{medicine_id}",
            {
              params: { path: { medicine_id: medicine.medicine_id } },
              body: { details },
            },
            (o) => must(session.api.PUT("/api/v1/catalog/medicines/{medicine_id}", o)),
          );
          await onDone();
          return "";
        }}
      />
    </div>
  );
}

const EMPTY: MedicineDetails = {
  name: "",
  active_ingredient: "",
  strength: "",
  dosage_form: "tablet",
  route: "oral",
  type: "other",
  default_instructions: "",
};

function MedicineForm(props: {
  action: Action;
  initial?: MedicineDetails;
  submit: string;
  onSubmit: (details: MedicineDetails) => Promise<string>;
}): ReactNode {
  const [d, setD] = useState<MedicineDetails>(props.initial ?? EMPTY);
  const { action } = props;
  const bind = bindTo(d, setD, action);
  return (
    <>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const details = {
            ...d,
            name: d.name.trim(),
            active_ingredient: d.active_ingredient.trim(),
            strength: d.strength.trim(),
            default_instructions: (d.default_instructions ?? "").trim(),
          };
          void action.run(async () => {
            const done = await props.onSubmit(details);
            if (!props.initial) setD(EMPTY);
            return done;
          });
        }}
      >
        <Field label="Name" required {...bind("name")} />
        <Field
          label="Active ingredient"
          required
          hint="As the drug vocabulary names it; several separated by / (amoxicillin/clavulanic acid)"
          {...bind("active_ingredient")}
        />
        <DrugFormFields draft={d} onChange={setD} action={action} example="e.g. 500 mg" />
        <Select label="Type" {...bind("type")}>
          <WordOptions values={TYPES} />
        </Select>
        <TextArea
          label="Default instructions"
          name="default_instructions"
          action={action}
          maxLength={2000}
          rows={2}
          value={d.default_instructions ?? ""}
          onChange={(e) => setD({ ...d, default_instructions: e.target.value })}
        />
        <button disabled={action.busy}>{props.submit}</button>
      </form>
      <Status action={action} />
    </>
  );
}
