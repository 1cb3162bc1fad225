// The keyvault: each replica's state and keys, unsealing with a share sealed in this
// browser to the replica's own key, and sealing (after a confirmation).
import { useCallback, useState, type ReactNode } from "react";

import { must, publicClient } from "../shared/api/client";
import type { Replica } from "../shared/api/types";
import { useApp, useLoad } from "../shared/context";
import { Field, Loading, Status, useAction } from "../shared/ui";
import { Rewrap } from "./Rewrap";
import { sealShare } from "./sealed";

export function Keyvault(): ReactNode {
  const { session } = useApp();
  const status = useAction();
  const unseal = useAction();
  const seal = useAction();
  const [replicas, setReplicas] = useState<Replica[] | null>(null);
  const [confirmSeal, setConfirmSeal] = useState(false);
  const load = useCallback(async () => {
    setReplicas((await must(publicClient().GET("/api/v1/vault/status"))).replicas);
  }, []);
  const { run } = status;
  useLoad(run, load);
  const sealed = (replicas ?? []).filter((r) => r.state === "sealed");
  const keys = replicas?.[0]?.keys ?? [];
  return (
    <>
      <section aria-labelledby="vault-title">
        <h2 id="vault-title">Keyvault</h2>
        <button className="secondary" onClick={() => void status.run(load)} disabled={status.busy}>
          Refresh
        </button>
        <Status action={status} />
        {replicas === null ? (
          <Loading what="the keyvault's status" />
        ) : replicas.length === 0 ? (
          <p className="error">No keyvault replica answers.</p>
        ) : (
          <table aria-label="Keyvault replicas">
            <thead>
              <tr>
                <th scope="col">Replica</th>
                <th scope="col">State</th>
                <th scope="col">Unseal progress</th>
              </tr>
            </thead>
            <tbody>
              {replicas.map((r) => (
                <tr key={r.instance}>
                  <td>
                    <code>{r.instance}</code>
                  </td>
                  <td data-testid="vault-state">{r.state}</td>
                  <td>{r.state === "sealed" ? `${r.progress} of ${r.threshold ?? "?"} shares` : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {keys.length > 0 && (
          <p>
            Keys: {keys.filter((k) => k.state === "active").length} active of {keys.length} (
            {keys.reduce((n, k) => n + k.use_count, 0)} uses).
          </p>
        )}
      </section>
      {replicas?.some((r) => r.state === "unsealed") && <Rewrap keys={keys} />}
      <section aria-labelledby="unseal-title">
        <h2 id="unseal-title">Unseal</h2>
        <p>
          Your share is sealed here, in this browser, to each sealed replica's own X25519 key: the gateway and the bus
          only ever carry ciphertext.
        </p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const input = form.elements.namedItem("share") as HTMLInputElement;
            const share = input.value.trim();
            void unseal.run(async () => {
              if (!share) throw new Error("Enter your share.");
              const current = (await must(publicClient().GET("/api/v1/vault/status"))).replicas;
              const targets = current.filter((r) => r.state === "sealed");
              if (targets.length === 0) return "No replica is sealed.";
              const lines: string[] = [];
              for (const r of targets) {
                const reply = await must(
                  publicClient().POST("/api/v1/vault/unseal", {
                    body: { instance: r.instance, sealed_share: sealShare(r.transport_public_key, share) },
                  }),
                );
                const progress = reply.state === "sealed" ? ` (${reply.progress} of ${reply.threshold})` : "";
                lines.push(`${r.instance}: ${reply.state}${progress}${reply.message ? `, ${reply.message}` : ""}`);
              }
              input.value = "";
              await load();
              return lines.join("; ");
            });
          }}
        >
          <Field
            label="Your unseal share"
            name="share"
            type="password"
            autoComplete="off"
            required
            spellCheck={false}
            action={unseal}
          />
          <button disabled={unseal.busy || (replicas !== null && sealed.length === 0)}>
            {unseal.busy ? "Submitting…" : "Submit share"}
          </button>
        </form>
        <Status action={unseal} />
      </section>
      <section aria-labelledby="seal-title">
        <h2 id="seal-title">Seal</h2>
        <p>
          Sealing wipes the keys from every replica: patient data is unavailable until enough shares unseal it again.
        </p>
        {confirmSeal ? (
          <p>
            <button
              className="danger"
              disabled={seal.busy}
              onClick={() =>
                void seal.run(async () => {
                  await must(session.api.POST("/api/v1/vault/seal"));
                  setConfirmSeal(false);
                  await load();
                  return "Every replica is sealed.";
                })
              }
            >
              Seal every replica now
            </button>{" "}
            <button className="secondary" onClick={() => setConfirmSeal(false)}>
              Cancel
            </button>
          </p>
        ) : (
          <button className="secondary" onClick={() => setConfirmSeal(true)}>
            Seal the keyvault…
          </button>
        )}
        <Status action={seal} />
      </section>
    </>
  );
}
