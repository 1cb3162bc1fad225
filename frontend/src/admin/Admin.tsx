// Administrators: registration tokens, staff accounts, the medicine catalog, physicians'
// working time (rosters), the keyvault, the audit log, the break-glass report and the
// FHIR bulk export (two administrators; files sealed to the recipient). They
// never see patient data (the API refuses it; nothing here asks): patient records are
// named by their ids only, which lead to who accessed them.
import { useState, type ReactNode } from "react";

import { WorkingTime } from "../reception/WorkingTime";
import { Audit } from "./Audit";
import { BreakGlass } from "./BreakGlass";
import { BulkExport } from "./BulkExport";
import { Catalog } from "./Catalog";
import { Keyvault } from "./Keyvault";
import { Staff } from "./Staff";
import { Tokens } from "./Tokens";

export const ADMIN_TABS = [
  "Tokens",
  "Staff",
  "Catalog",
  "Working time",
  "Keyvault",
  "Audit",
  "Break-glass",
  "Bulk export",
];

export function Admin({ tab, go }: { tab: string; go: (tab: string) => void }): ReactNode {
  /** The patient whose access history the audit screen shows (from another screen). */
  const [focus, setFocus] = useState({ patientId: "", n: 0 });
  const [physician, setPhysician] = useState("");
  const history = (patientId: string): void => {
    setFocus((f) => ({ patientId, n: f.n + 1 }));
    go("Audit");
  };
  if (tab === "Tokens") return <Tokens />;
  if (tab === "Staff") return <Staff />;
  if (tab === "Catalog") return <Catalog />;
  if (tab === "Working time") return <WorkingTime physician={physician} onPhysician={setPhysician} />;
  if (tab === "Keyvault") return <Keyvault />;
  if (tab === "Audit") return <Audit focus={focus} />;
  if (tab === "Bulk export") return <BulkExport />;
  return <BreakGlass onHistory={history} />;
}
