// Names of staff accounts for administrators (GET /staff: disabled accounts too, unlike the
// directory), so the audit log and the token list say who, not an id.
import { useCallback, useEffect, useState } from "react";

import { must } from "../shared/api/client";
import type { Account } from "../shared/api/types";
import { useApp } from "../shared/context";

export interface StaffNames {
  accounts: Account[];
  /** "Ada Lovelace (administrator)"; the whole id while it is not known. */
  name: (id: string) => string;
  reload: () => void;
}

export function useStaffNames(): StaffNames {
  const { session } = useApp();
  const [accounts, setAccounts] = useState<Account[]>([]);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let live = true;
    must(session.api.GET("/api/v1/staff")).then(
      (reply) => live && setAccounts(reply.accounts),
      () => undefined, // names stay ids; the screen says what failed itself
    );
    return () => {
      live = false;
    };
  }, [session, generation]);
  const name = useCallback(
    (id: string): string => {
      const a = accounts.find((x) => x.account_id === id);
      return a ? `${a.display_name} (${a.role})` : id;
    },
    [accounts],
  );
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { accounts, name, reload };
}
