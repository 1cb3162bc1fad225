// The API client, generated from the gateway's OpenAPI document (schema.ts, `make api-types`)
// and wired to openapi-fetch with one custom fetch: every request signed as the gateway
// expects (RFC 9421 + Content-Digest, httpsig.ts), a read refused by the rate limit with a
// short Retry-After signed afresh and sent once more, and the gateway's error shape
// {"error": {"code", "message", "details"}} turned into an ApiError by `must`.
//
//   const me = await must(api.GET("/api/v1/me"));
//   await must(api.POST("/api/v1/appointments/{appointment_id}/check-in", { params: { path: { appointment_id } } }));
//
// A contract change that breaks a screen fails `npm run typecheck` once the types are
// regenerated, and `make lint` fails while they are not (`make api-check`).
import createClient, { type Client } from "openapi-fetch";

import { signRequest } from "./httpsig";
import type { paths } from "./schema";

export type Api = Client<paths>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown,
    /** Seconds to wait before trying again (a 429's Retry-After), if the gateway said. */
    readonly retryAfter: number | null = null,
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
  #api: Api | null = null;

  constructor(accountId: string, key: CryptoKey) {
    this.accountId = accountId;
    this.#key = key;
  }

  /** The client that signs with this session's key (made on first use). */
  get api(): Api {
    this.#api ??= signedClient(() => this.signingKey(), this.accountId);
    return this.#api;
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

/** The longest Retry-After a read waits out by itself before saying "too many requests". */
export const READ_RETRY_MAX_S = 5;

const NETWORK = "The gateway cannot be reached: check the connection and try again.";

function origin(): string {
  return window.location.origin;
}

async function send(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError(0, "network", NETWORK, null);
  }
}

function retryAfter(response: Response): number | null {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds : null;
}

/** Refusals a read may be sent again after, when they say how soon (Retry-After): the rate
 * limit (429), and a 503 (a gateway too busy to take it in time, or a dependency away for a
 * moment; nothing was done). */
const RETRIED = new Set([429, 503]);

/** A fetch for openapi-fetch that signs each request as `keyId` with the key `key()` gives
 * (it throws LockedError once the session is locked: nothing is sent then). A GET refused
 * by the rate limit or with a 503, with a Retry-After of at most READ_RETRY_MAX_S, is signed
 * afresh (a new nonce) and sent once more after it; a write is never repeated by itself. */
export function signingFetch(key: () => CryptoKey, keyId: string): (request: Request) => Promise<Response> {
  return async (request: Request): Promise<Response> => {
    const method = request.method.toUpperCase();
    const content =
      method === "GET" || method === "HEAD" ? new Uint8Array() : new Uint8Array(await request.arrayBuffer());
    const signed = async (): Promise<Response> => {
      const headers = new Headers(request.headers);
      const signature = await signRequest(key(), keyId, method, request.url, content);
      for (const [name, value] of Object.entries(signature)) headers.set(name, value);
      // The gateway takes every write as JSON, an empty one too (the steps of a visit).
      if (method === "GET" || method === "HEAD") headers.delete("Content-Type");
      else if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
      return send(request.url, { method, headers, body: content.length ? content : undefined });
    };
    const response = await signed();
    const wait = RETRIED.has(response.status) ? retryAfter(response) : null;
    if (method !== "GET" || wait === null || wait > READ_RETRY_MAX_S) return response;
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    return signed();
  };
}

/** A client whose every request is signed (by the session's key, or by a new key as
 * "register" at registration). */
export function signedClient(key: () => CryptoKey, keyId: string): Api {
  return createClient<paths>({ baseUrl: origin(), fetch: signingFetch(key, keyId) });
}

/** The few routes that take no signature (keyvault status and unseal). */
export function publicClient(): Api {
  return createClient<paths>({
    baseUrl: origin(),
    fetch: (request: Request) =>
      request
        .arrayBuffer()
        .then((body) =>
          send(request.url, { method: request.method, headers: request.headers, body: body.byteLength ? body : null }),
        ),
  });
}

interface GatewayError {
  error?: { code?: string; message?: string; details?: unknown };
}

/** The error an answer stands for. */
export function errorOf(response: Response, body: unknown): ApiError {
  const error = (typeof body === "object" && body !== null ? (body as GatewayError).error : undefined) ?? {};
  const wait = retryAfter(response);
  const message =
    error.message ??
    (response.status === 429 ? "Too many requests" : `${response.status} ${response.statusText || "error"}`);
  return new ApiError(
    response.status,
    error.code ?? "error",
    wait !== null && response.status === 429 ? `${message} (try again in ${wait} s)` : message,
    error.details ?? null,
    wait,
  );
}

/** The data of a successful answer; an ApiError otherwise. */
export async function must<T>(pending: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await pending;
  if (!response.ok) throw errorOf(response, error);
  return data as T;
}

/** The WebSocket URL for a signed handshake. A browser cannot set headers on a WebSocket
 * handshake, so the three signature values ride in the query string; the signed target URI
 * is the URL without them (gateway/routes/live.py `handshake_material`). */
export async function liveUrl(session: Session, lastId?: number, afterEvent?: number): Promise<string> {
  const url = new URL("/api/v1/ws", origin());
  if (lastId) url.searchParams.set("last_id", String(lastId));
  if (afterEvent !== undefined) url.searchParams.set("after_event", String(afterEvent));
  const target = url.toString().replace(/^http/, "ws");
  const headers = await signRequest(session.signingKey(), session.accountId, "GET", target, new Uint8Array());
  const signed = new URL(target);
  signed.searchParams.set("sig_input", headers["Signature-Input"]);
  signed.searchParams.set("sig", headers.Signature);
  signed.searchParams.set("digest", headers["Content-Digest"]);
  return signed.toString();
}
