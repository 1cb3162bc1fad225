// Every API call, signed as the gateway expects (RFC 9421 + Content-Digest), and the
// gateway's error shape {"error": {"code", "message", "details"}} as an ApiError.
import { signRequest } from "./httpsig";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown,
  ) {
    super(message);
  }
}

export class LockedError extends Error {
  constructor() {
    super("The app is locked: unlock it with your passphrase.");
  }
}

/** The unlocked key. `lock()` drops the CryptoKey: nothing can sign with it afterwards. */
export class Session {
  #key: CryptoKey | null;
  readonly accountId: string;

  constructor(accountId: string, key: CryptoKey) {
    this.accountId = accountId;
    this.#key = key;
  }

  get locked(): boolean {
    return this.#key === null;
  }

  lock(): void {
    this.#key = null;
  }

  /** The key, for signing only; throws once the session is locked. */
  signingKey(): CryptoKey {
    if (this.#key === null) throw new LockedError();
    return this.#key;
  }
}

export type Params = Record<string, string | number | boolean | undefined | null>;

export function apiUrl(path: string, params?: Params): string {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, String(value));
  }
  return target.toString();
}

async function parse(response: Response): Promise<unknown> {
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
    const retry = response.headers.get("Retry-After");
    const message =
      error?.message ??
      (response.status === 429 ? "Too many requests" : `${response.status} ${response.statusText || "error"}`);
    throw new ApiError(
      response.status,
      error?.code ?? "error",
      retry && response.status === 429 ? `${message} (try again in ${retry} s)` : message,
      error?.details ?? null,
    );
  }
  return data;
}

async function send(method: string, target: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(target, { ...init, method, credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError(0, "network", "The gateway cannot be reached: check the connection and try again.", null);
  }
}

/** A signed request as `keyId` (an account id, or "register"). */
export async function signedCall<T>(
  key: CryptoKey,
  keyId: string,
  method: string,
  path: string,
  body?: unknown,
  params?: Params,
): Promise<T> {
  const target = apiUrl(path, params);
  const content = body === undefined ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(body));
  const headers = await signRequest(key, keyId, method, target, content);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await send(method, target, { headers, body: body === undefined ? undefined : content });
  return (await parse(response)) as T;
}

export function call<T>(session: Session, method: string, path: string, body?: unknown, params?: Params): Promise<T> {
  return signedCall<T>(session.signingKey(), session.accountId, method, path, body, params);
}

export async function unsigned<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await send(method, apiUrl(path), {
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await parse(response)) as T;
}

/** The WebSocket URL for a signed handshake. A browser cannot set headers on a WebSocket
 * handshake, so the three signature values ride in the query string; the signed target URI
 * is the URL without them (gateway/routes/live.py `handshake_material`). */
export async function liveUrl(session: Session, lastId?: number): Promise<string> {
  const target = apiUrl("/api/v1/ws", { last_id: lastId }).replace(/^http/, "ws");
  const headers = await signRequest(session.signingKey(), session.accountId, "GET", target, new Uint8Array());
  const url = new URL(target);
  url.searchParams.set("sig_input", headers["Signature-Input"]);
  url.searchParams.set("sig", headers.Signature);
  url.searchParams.set("digest", headers["Content-Digest"]);
  return url.toString();
}

interface Problem {
  loc?: (string | number)[];
  msg?: string;
}

/** Validation problems by field name (the last named part of each location). */
export function fieldProblems(error: unknown): Record<string, string> {
  const problems: Record<string, string> = {};
  if (!(error instanceof ApiError) || !Array.isArray(error.details)) return problems;
  for (const problem of error.details as Problem[]) {
    const names = (problem.loc ?? []).filter((part): part is string => typeof part === "string" && part !== "body");
    const name = names[names.length - 1];
    if (name && problem.msg) problems[name] = problems[name] ? `${problems[name]}; ${problem.msg}` : problem.msg;
  }
  return problems;
}

/** One readable sentence for an error, with the gateway's field problems appended. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) {
    const details = Array.isArray(error.details)
      ? (error.details as Problem[])
          .map((d) => {
            const where = (d.loc ?? []).filter((p) => p !== "body").join(".");
            return where ? `${where}: ${d.msg}` : d.msg;
          })
          .join("; ")
      : "";
    return details ? `${error.message} (${details})` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}
