/**
 * The keyring (shared/credentials/keys.ts): each secret gets a stable kid that reveals
 * nothing, the first secret signs and all of them verify, a secret under 16 bytes is refused;
 * `hmac` / `hmacVerify` are RFC 2104 HMAC-SHA256 keyed with the trimmed UTF-8 secret.
 */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { hmac, hmacVerify, importKeyring, MIN_SECRET_BYTES } from "../../../../shared/credentials/keys.ts";

const A = "secret-A-0123456789abcdef";
const B = "secret-B-0123456789abcdef";
const bytes = (s: string) => new TextEncoder().encode(s) as Uint8Array<ArrayBuffer>;

describe("importKeyring", () => {
  it("gives a key an 8-character base64url kid", async () => {
    const ring = await importKeyring(A);
    expect(ring.signer.kid).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(ring.byKid.get(ring.signer.kid)).toBe(ring.signer);
    expect(ring.byKid.size).toBe(1);
  });

  it("derives the same kid for the same secret across imports", async () => {
    const one = await importKeyring(A);
    const two = await importKeyring(A);
    expect(two.signer.kid).toBe(one.signer.kid);
    // Position in the list does not change a secret's kid.
    const three = await importKeyring(`${B},${A}`);
    expect(three.byKid.has(one.signer.kid)).toBe(true);
  });

  it("derives different kids for different secrets", async () => {
    const kids = new Set<string>();
    for (let i = 0; i < 20; i++) kids.add((await importKeyring(`${A}-${i}`)).signer.kid);
    expect(kids.size).toBe(20);
  });

  it("does not reveal the secret in the kid", async () => {
    const ring = await importKeyring("AAAAAAAAAAAAAAAAAAAAAAAA");
    expect("AAAAAAAAAAAAAAAAAAAAAAAA").not.toContain(ring.signer.kid);
  });

  it("signs with the first secret and verifies with all of them", async () => {
    const ab = await importKeyring(`${A},${B}`);
    const a = await importKeyring(A);
    const b = await importKeyring(B);
    expect(ab.signer.kid).toBe(a.signer.kid);
    expect([...ab.byKid.keys()].sort()).toEqual([a.signer.kid, b.signer.kid].sort());
  });

  it("ignores spaces around secrets and empty list entries", async () => {
    const a = await importKeyring(A);
    const spaced = await importKeyring(`  ${A} , , ${B}  ,`);
    expect(spaced.signer.kid).toBe(a.signer.kid);
    expect(spaced.byKid.size).toBe(2);
  });

  it("refuses a missing or empty value with a TypeError", async () => {
    for (const value of [undefined, "", "   ", ",", " , , "]) {
      await expect(importKeyring(value), JSON.stringify(value)).rejects.toThrow(TypeError);
    }
  });

  it("refuses secrets shorter than 16 bytes with a TypeError", async () => {
    expect(MIN_SECRET_BYTES).toBe(16);
    await expect(importKeyring("x".repeat(15))).rejects.toThrow(TypeError);
    await expect(importKeyring("short")).rejects.toThrow(TypeError);
    const ring = await importKeyring("x".repeat(16));
    expect(Buffer.from(await hmac(ring.signer, bytes("m")))).toEqual(createHmac("sha256", "x".repeat(16)).update("m").digest());
  });

  it("refuses a keyring if any one secret is too short, naming its position", async () => {
    await expect(importKeyring(`${A},short`)).rejects.toThrow(TypeError);
    await expect(importKeyring(`${A},short`)).rejects.toThrow(/#2/);
  });

  it("counts UTF-8 bytes, not characters", async () => {
    // 8 × "é" is 8 characters but 16 bytes.
    const ring = await importKeyring("é".repeat(8));
    expect(Buffer.from(await hmac(ring.signer, bytes("m")))).toEqual(
      createHmac("sha256", Buffer.from("é".repeat(8), "utf8"))
        .update("m")
        .digest(),
    );
    // 15 bytes: 7 × "é" + "x".
    await expect(importKeyring(`${"é".repeat(7)}x`)).rejects.toThrow(TypeError);
  });
});

describe("hmac / hmacVerify", () => {
  it("computes RFC 2104 HMAC-SHA256 keyed with the UTF-8 secret", async () => {
    const ring = await importKeyring(A);
    const data = bytes("the quick brown fox");
    const expected = createHmac("sha256", Buffer.from(A, "utf8")).update(data).digest();
    expect(Buffer.from(await hmac(ring.signer, data))).toEqual(expected);
  });

  it("keys with the trimmed secret", async () => {
    const ring = await importKeyring(`  ${A}  `);
    const expected = createHmac("sha256", A).update("x").digest();
    expect(Buffer.from(await hmac(ring.signer, bytes("x")))).toEqual(expected);
  });

  it("accepts the right tag and refuses an altered tag, other data, or another key", async () => {
    const a = await importKeyring(A);
    const b = await importKeyring(B);
    const data = bytes("payload");
    const tag = await hmac(a.signer, data);
    expect(await hmacVerify(a.signer, tag, data)).toBe(true);
    const flipped = new Uint8Array(tag);
    flipped[31]! ^= 1;
    expect(await hmacVerify(a.signer, flipped, data)).toBe(false);
    expect(await hmacVerify(a.signer, tag, bytes("payloae"))).toBe(false);
    expect(await hmacVerify(b.signer, tag, data)).toBe(false);
    expect(await hmacVerify(a.signer, tag.slice(0, 16), data)).toBe(false);
  });

  it("does not expose the raw secret through the CryptoKey", async () => {
    const ring = await importKeyring(A);
    expect(ring.signer.key.extractable).toBe(false);
    await expect(crypto.subtle.exportKey("raw", ring.signer.key)).rejects.toThrow();
  });
});
