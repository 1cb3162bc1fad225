// The staff member's Ed25519 key in the browser: made here, stored in IndexedDB only
// wrapped (AES-GCM) under a key derived from the passphrase (PBKDF2-SHA-256, 600,000
// iterations), and unwrapped at unlock as a NON-extractable key held in memory only.

import { b64, fromB64 } from "./api/httpsig";

const DB = "medihaven";
const STORE = "keys";
export const ITERATIONS = 600_000;
const MIN_ITERATIONS = 100_000;

export interface StoredKey {
  accountId: string;
  username: string;
  role: string;
  publicKey: string; // raw Ed25519, base64
  salt: string;
  iv: string;
  wrapped: string;
  iterations: number;
  baseUrl: string;
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function tx<T>(mode: IDBTransactionMode, run: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const request = run(db.transaction(STORE, mode).objectStore(STORE));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export const loadStored = (): Promise<StoredKey | undefined> => tx("readonly", (s) => s.get("me"));
export const saveStored = (value: StoredKey): Promise<IDBValidKey> => tx("readwrite", (s) => s.put(value, "me"));
export const forgetStored = (): Promise<undefined> => tx("readwrite", (s) => s.delete("me"));

/** A key file (export) or record read back: the wrapped key and its public half only. */
export function parseKeyFile(text: string): StoredKey {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error("This is not a Medihaven key file (it is not JSON).");
  }
  const record = value as Partial<StoredKey>;
  const strings = ["accountId", "username", "role", "publicKey", "salt", "iv", "wrapped"] as const;
  if (typeof value !== "object" || value === null || strings.some((k) => typeof record[k] !== "string" || !record[k])) {
    throw new Error("This is not a Medihaven key file (fields are missing).");
  }
  if (typeof record.iterations !== "number" || record.iterations < MIN_ITERATIONS) {
    throw new Error("This key file is wrapped too weakly (too few PBKDF2 iterations).");
  }
  const allowed: StoredKey = {
    accountId: record.accountId!,
    username: record.username!,
    role: record.role!,
    publicKey: record.publicKey!,
    salt: record.salt!,
    iv: record.iv!,
    wrapped: record.wrapped!,
    iterations: record.iterations,
    baseUrl: typeof record.baseUrl === "string" ? record.baseUrl : "",
  };
  return allowed;
}

export async function newKeyPair(): Promise<CryptoKeyPair> {
  try {
    return (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  } catch {
    throw new Error(
      "This browser cannot make Ed25519 keys (WebCrypto): use a current Chrome, Edge, Firefox or Safari.",
    );
  }
}

export async function rawPublicKey(pair: CryptoKeyPair): Promise<string> {
  return b64(await crypto.subtle.exportKey("raw", pair.publicKey));
}

async function wrappingKey(passphrase: string, salt: Uint8Array, iterations: number): Promise<CryptoKey> {
  const material = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(passphrase) as BufferSource,
    "PBKDF2",
    false,
    ["deriveKey"],
  );
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as BufferSource, iterations },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["wrapKey", "unwrapKey"],
  );
}

export async function wrapPrivateKey(
  privateKey: CryptoKey,
  passphrase: string,
): Promise<Pick<StoredKey, "salt" | "iv" | "wrapped" | "iterations">> {
  if (passphrase.length < 10) throw new Error("Choose a passphrase of at least 10 characters.");
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const aes = await wrappingKey(passphrase, salt, ITERATIONS);
  const wrapped = await crypto.subtle.wrapKey("pkcs8", privateKey, aes, { name: "AES-GCM", iv: iv as BufferSource });
  return { salt: b64(salt), iv: b64(iv), wrapped: b64(wrapped), iterations: ITERATIONS };
}

/** The private key, non-extractable, or an Error("wrong passphrase"). */
export async function unlock(stored: StoredKey, passphrase: string): Promise<CryptoKey> {
  const aes = await wrappingKey(passphrase, fromB64(stored.salt), stored.iterations);
  try {
    return await crypto.subtle.unwrapKey(
      "pkcs8",
      fromB64(stored.wrapped) as BufferSource,
      aes,
      { name: "AES-GCM", iv: fromB64(stored.iv) as BufferSource },
      { name: "Ed25519" },
      false,
      ["sign"],
    );
  } catch {
    throw new Error("The passphrase is wrong.");
  }
}
