// An unseal share travels sealed to the keyvault replica's own X25519 key, so neither the
// gateway nor the bus ever sees it in clear. This is libsodium's crypto_box_seal (what the
// keyvault opens with PyNaCl's SealedBox): an ephemeral X25519 key pair, the nonce
// BLAKE2b-192(ephemeral public key ‖ recipient public key), then crypto_box
// (XSalsa20-Poly1305); the output is the ephemeral public key followed by the box.
// Pure JavaScript (tweetnacl, blakejs): no WebAssembly, so the strict CSP holds.
import { blake2b } from "blakejs";
import nacl from "tweetnacl";

import { b64, fromB64 } from "../shared/api/httpsig";

export function sealNonce(ephemeralPublic: Uint8Array, recipientPublic: Uint8Array): Uint8Array {
  const input = new Uint8Array(64);
  input.set(ephemeralPublic);
  input.set(recipientPublic, 32);
  return blake2b(input, undefined, nacl.box.nonceLength);
}

export function sealBytes(message: Uint8Array, recipientPublic: Uint8Array): Uint8Array {
  if (recipientPublic.length !== nacl.box.publicKeyLength)
    throw new Error("The keyvault's transport key is not an X25519 key.");
  const ephemeral = nacl.box.keyPair();
  const boxed = nacl.box(
    message,
    sealNonce(ephemeral.publicKey, recipientPublic),
    recipientPublic,
    ephemeral.secretKey,
  );
  ephemeral.secretKey.fill(0);
  const sealed = new Uint8Array(32 + boxed.length);
  sealed.set(ephemeral.publicKey);
  sealed.set(boxed, 32);
  return sealed;
}

/** The share, sealed to a replica's transport key (base64), for POST /api/v1/vault/unseal. */
export function sealShare(replicaPublicKey: string, share: string): string {
  return b64(sealBytes(new TextEncoder().encode(share.trim()), fromB64(replicaPublicKey)));
}
