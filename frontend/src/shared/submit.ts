// Every write submitted once. A form submission gets one Idempotency-Key (the header the
// gateway hands to the service, which runs a write once per key and returns the first
// result to a repeat), and that key and the very same body are reused when the user tries
// again after a failure (a lost reply, the connection gone): the server then answers the
// first result instead of writing twice. A second click while the first is under way joins
// it instead of sending again. Only when what the form would send changes is there a new
// submission (a new key, a new body, e.g. a new signature).
//
// Kept in this module's memory (never browser storage), by the form's draft key, so a
// retry after switching sections is still the same submission; `settle` forgets it once
// it succeeded.

interface Pending {
  fingerprint: string;
  key: string;
  body: unknown;
  inFlight: Promise<unknown> | null;
}

const pending = new Map<string, Pending>();

/** A fresh key the gateway accepts (8 to 100 letters, digits, - or _). */
export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

/** The header to send with a write. */
export function idempotent(key: string): { "Idempotency-Key": string } {
  return { "Idempotency-Key": key };
}

/**
 * Submit the form `form` once: `what` is what the user asked for (compared as JSON to the
 * last attempt's), `make` builds the body to send (called once per submission: it may sign,
 * stamp a time, …), `send` sends it with its key. The same `what` again reuses the body and
 * the key (and joins an attempt still under way); the submission is forgotten on success.
 */
export async function submitOnce<B, R>(
  form: string,
  what: unknown,
  make: () => Promise<B> | B,
  send: (body: B, key: string) => Promise<R>,
): Promise<R> {
  const fingerprint = JSON.stringify(what);
  let entry = pending.get(form);
  if (entry?.fingerprint !== fingerprint) {
    entry = { fingerprint, key: newIdempotencyKey(), body: undefined, inFlight: null };
    pending.set(form, entry);
  }
  if (entry.inFlight) return entry.inFlight as Promise<R>;
  const current = entry;
  const attempt = (async () => {
    current.body ??= await make();
    return send(current.body as B, current.key);
  })();
  current.inFlight = attempt;
  try {
    const result = await attempt;
    if (pending.get(form) === current) pending.delete(form);
    return result;
  } finally {
    current.inFlight = null;
  }
}

/** Forget every pending submission (e.g. when the app locks and drops its drafts). */
export function forgetSubmissions(): void {
  pending.clear();
}

/** A small write (a button, a one-line form): `submitOnce` where the request's options
 * (path parameters and body) are what the user asked for, so a retry of the same write
 * after a failure reuses its key and a double click joins the first. `send` gets the
 * options with the Idempotency-Key header added. */
export function writeOnce<O extends object, R>(
  form: string,
  options: O,
  send: (options: O & { headers: { "Idempotency-Key": string } }) => Promise<R>,
): Promise<R> {
  return submitOnce(
    form,
    options,
    () => null,
    (_body, key) => send({ ...options, headers: idempotent(key) }),
  );
}
