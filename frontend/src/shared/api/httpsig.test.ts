import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

import { contentDigest, keyFromSeed, paramsLine, signatureBase, signRequest } from "./httpsig";

const here = dirname(fileURLToPath(import.meta.url));
const file = resolve(here, "../../../../tests/vectors/httpsig_vectors.json");
const shared = JSON.parse(readFileSync(file, "utf8"));

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));
}

describe("the browser signs exactly as the gateway verifies (shared vectors)", () => {
  for (const vector of shared.vectors) {
    it(vector.name ?? vector.target_uri, async () => {
      const seed = hex(vector.private_key_seed_hex ?? shared.private_key_seed_hex);
      const key = await keyFromSeed(seed);
      const body = new TextEncoder().encode(vector.body);
      expect(await contentDigest(body)).toBe(vector.content_digest);
      const params = paramsLine(vector.created, vector.key_id, vector.nonce);
      expect(`sig1=${params}`).toBe(vector.signature_input);
      expect(signatureBase(vector.method, vector.target_uri, vector.content_digest, params)).toBe(
        vector.signature_base,
      );
      const headers = await signRequest(key, vector.key_id, vector.method, vector.target_uri, body, {
        created: vector.created,
        nonce: vector.nonce,
      });
      expect(headers["Signature-Input"]).toBe(vector.signature_input);
      expect(headers.Signature).toBe(vector.signature); // Ed25519 is deterministic
    });
  }
});
