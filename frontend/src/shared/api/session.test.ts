import { blake2b } from "blakejs";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";

import { sealNonce, sealShare } from "../../admin/sealed";
import { LockedError, Session } from "./client";
import { b64, fromB64, keyFromSeed } from "./httpsig";

describe("locking", () => {
  it("drops the key: a locked session can no longer sign", async () => {
    const session = new Session("acc-1", await keyFromSeed(new Uint8Array(32).fill(7)));
    expect(session.signingKey()).toBeInstanceOf(CryptoKey);
    session.lock();
    expect(session.locked).toBe(true);
    expect(() => session.signingKey()).toThrow(LockedError);
  });
});

describe("unseal shares are libsodium sealed boxes", () => {
  it("opens with the keyvault's X25519 secret key (crypto_box_seal_open)", () => {
    const keyvault = nacl.box.keyPair();
    const sealed = fromB64(sealShare(b64(keyvault.publicKey), "  1-abcdef0123456789  "));
    const ephemeral = sealed.slice(0, 32);
    const nonce = sealNonce(ephemeral, keyvault.publicKey);
    expect(nonce).toEqual(blake2b(Uint8Array.from([...ephemeral, ...keyvault.publicKey]), undefined, 24));
    const opened = nacl.box.open(sealed.slice(32), nonce, ephemeral, keyvault.secretKey);
    expect(opened && new TextDecoder().decode(opened)).toBe("1-abcdef0123456789");
  });

  it("refuses a transport key of the wrong size", () => {
    expect(() => sealShare(b64(new Uint8Array(16)), "share")).toThrow(/X25519/);
  });
});
