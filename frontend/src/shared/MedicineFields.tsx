// The fields that say what a medicine is, the same wherever one is described: the catalog's
// entry form (admin) and the free-text prescription (physician): its strength, dosage form
// and route, each bound to the caller's draft and showing the server's problem under it.
import type { ReactNode } from "react";

import type { DosageForm, Route } from "./api/types";
import { DOSAGE_FORMS, ROUTES } from "./medicines";
import { bindTo, Field, Select, WordOptions, type Action } from "./ui";

/** The part of a medicine's description these fields edit. */
export interface DrugForm {
  strength: string;
  dosage_form: DosageForm;
  route: Route;
}

/** Strength, dosage form and route, bound to the caller's draft. */
export function DrugFormFields<D extends DrugForm>(props: {
  draft: D;
  onChange: (draft: D) => void;
  action: Action;
  /** The strength's example (its placeholder). */
  example: string;
}): ReactNode {
  const bind = bindTo<DrugForm>(props.draft, (d) => props.onChange({ ...props.draft, ...d }), props.action);
  return (
    <>
      <Field label="Strength" required placeholder={props.example} {...bind("strength")} />
      <Select label="Dosage form" {...bind("dosage_form")}>
        <WordOptions values={DOSAGE_FORMS} />
      </Select>
      <Select label="Route" {...bind("route")}>
        <WordOptions values={ROUTES} />
      </Select>
    </>
  );
}
