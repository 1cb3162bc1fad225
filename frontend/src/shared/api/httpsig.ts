// RFC 9421 request signatures, exactly as mesh/httpsig.py builds them (the shared vectors
// in tests/vectors/httpsig_vectors.json are checked by both test suites).

const COMPONENTS = '("@method" "@target-uri" "content-digest")';

export function b64(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let text = "";
  for (const byte of view) text += String.fromCharCode(byte);
  return btoa(text);
}

export function b64url(bytes: Uint8Array): string {
  return b64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromB64(text: string): Uint8Array {
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

export async function contentDigest(body: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", body as BufferSource);
  return `sha-256=:${b64(digest)}:`;
}

function sfString(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function paramsLine(created: number, keyId: string, nonce: string): string {
  return `${COMPONENTS};created=${created};keyid=${sfString(keyId)};nonce=${sfString(nonce)};alg="ed25519"`;
}

export function signatureBase(method: string, targetUri: string, digest: string, params: string): string {
  return [
    `"@method": ${method}`,
    `"@target-uri": ${targetUri}`,
    `"content-digest": ${digest}`,
    `"@signature-params": ${params}`,
  ].join("\n");
}

export interface SignOptions {
  created?: number;
  nonce?: string;
}

/** Headers to add to a request: Content-Digest, Signature-Input and Signature. */
export async function signRequest(
  key: CryptoKey,
  keyId: string,
  method: string,
  targetUri: string,
  body: Uint8Array,
  options: SignOptions = {},
): Promise<Record<string, string>> {
  const created = options.created ?? Math.floor(Date.now() / 1000);
  const nonce = options.nonce ?? b64url(crypto.getRandomValues(new Uint8Array(18)));
  const digest = await contentDigest(body);
  const params = paramsLine(created, keyId, nonce);
  const base = new TextEncoder().encode(signatureBase(method, targetUri, digest, params));
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, key, base as BufferSource);
  return {
    "Content-Digest": digest,
    "Signature-Input": `sig1=${params}`,
    Signature: `sig1=:${b64(signature)}:`,
  };
}

/** An Ed25519 private key from its 32-byte seed (PKCS#8 wrapping), for tests. */
export async function keyFromSeed(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  const prefix = Uint8Array.from([
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
  ]);
  const pkcs8 = new Uint8Array(prefix.length + seed.length);
  pkcs8.set(prefix);
  pkcs8.set(seed, prefix.length);
  return crypto.subtle.importKey("pkcs8", pkcs8 as BufferSource, { name: "Ed25519" }, extractable, ["sign"]);
}
