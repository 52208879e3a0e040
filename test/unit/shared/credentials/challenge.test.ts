/**
 * Proof-of-work challenges (shared/credentials/challenge.ts, shared/wire/pow.ts): an issued
 * challenge is signed over every field and its caller and parses back from its header; a
 * solving nonce verifies, and `verifySolution` / `readSolution` refuse a changed or spliced
 * field, a foreign or unknown key, an expired challenge, too little work and malformed input.
 */
import { createHash, createHmac } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { issueChallenge, verifySolution } from "../../../../shared/credentials/challenge.ts";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { parseAuthParams } from "../../../../shared/wire/auth-params.ts";
import { formatChallenge, leadingZeroBits, POW_SCHEME, type PowChallenge, powDigest, readSolution } from "../../../../shared/wire/pow.ts";

const SECRET_A = "challenge-secret-A-0123456789";
const SECRET_B = "challenge-secret-B-0123456789";
const NOW = 1_800_000_000_123;
const CALLER = "ip:203.0.113.7";
const DIFFICULTY = 8;

let ringA: Keyring;
let ringB: Keyring;
let ringAB: Keyring;
let ringBA: Keyring;

beforeAll(async () => {
  ringA = await importKeyring(SECRET_A);
  ringB = await importKeyring(SECRET_B);
  ringAB = await importKeyring(`${SECRET_A},${SECRET_B}`);
  ringBA = await importKeyring(`${SECRET_B},${SECRET_A}`);
});

/** Leading zero bits, counted one bit at a time from the MSB of byte 0 (reference implementation). */
function refZeroBits(bytes: Uint8Array): number {
  let n = 0;
  for (const b of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      if ((b >> bit) & 1) return n;
      n++;
    }
  }
  return n;
}

const sha = (salt: string, nonce: string) =>
  createHash("sha256")
    .update(salt + nonce, "utf8")
    .digest();

/** Brute-force the smallest decimal nonce meeting `difficulty` for `salt`. */
function solve(salt: string, difficulty: number): string {
  for (let n = 0; ; n++) if (refZeroBits(sha(salt, String(n))) >= difficulty) return String(n);
}

/** A nonce that does NOT meet `difficulty`. */
function weakNonce(salt: string, difficulty: number): string {
  for (let n = 0; ; n++) if (refZeroBits(sha(salt, String(n))) < difficulty) return String(n);
}

const issue = (
  ring: Keyring,
  over: Partial<{ realm: string; difficulty: number; credits: number; ttlSeconds: number; caller: string; nowMs: number }> = {},
) =>
  issueChallenge(ring, { realm: "tollbooth", difficulty: DIFFICULTY, credits: 20, ttlSeconds: 120, caller: CALLER, nowMs: NOW, ...over });

/** The challenge's parameters as a client echoes them, plus the nonce (strings, as from a header). */
function solutionParams(ch: PowChallenge, nonce: string): Record<string, string> {
  const parsed = parseAuthParams(formatChallenge(ch));
  return { ...parsed!.params, nonce };
}

describe("leadingZeroBits", () => {
  it("counts from the most significant bit of byte 0", () => {
    expect(leadingZeroBits(new Uint8Array([]))).toBe(0);
    expect(leadingZeroBits(new Uint8Array([0x80]))).toBe(0);
    expect(leadingZeroBits(new Uint8Array([0xff, 0x00]))).toBe(0);
    expect(leadingZeroBits(new Uint8Array([0x40]))).toBe(1);
    expect(leadingZeroBits(new Uint8Array([0x01]))).toBe(7);
    expect(leadingZeroBits(new Uint8Array([0x00]))).toBe(8);
    expect(leadingZeroBits(new Uint8Array([0x00, 0x80]))).toBe(8);
    expect(leadingZeroBits(new Uint8Array([0x00, 0x01]))).toBe(15);
    expect(leadingZeroBits(new Uint8Array([0x00, 0x00, 0x0f, 0xff]))).toBe(20);
    expect(leadingZeroBits(new Uint8Array([0x00, 0x00, 0x00, 0x00, 0x01]))).toBe(39);
    expect(leadingZeroBits(new Uint8Array(32))).toBe(256);
  });

  it("does not look past the first set bit", () => {
    expect(leadingZeroBits(new Uint8Array([0x10, 0x00, 0x00]))).toBe(3);
  });

  it("agrees with a bit-by-bit count on every single byte and on random digests", () => {
    for (let b = 0; b < 256; b++) expect(leadingZeroBits(new Uint8Array([0, b]))).toBe(refZeroBits(new Uint8Array([0, b])));
    for (let i = 0; i < 200; i++) {
      const digest = new Uint8Array(sha("x", String(i)));
      expect(leadingZeroBits(digest)).toBe(refZeroBits(digest));
    }
  });
});

describe("powDigest", () => {
  it("is SHA-256 of the UTF-8 text salt ‖ nonce", async () => {
    expect(Buffer.from(await powDigest("abc", "123"))).toEqual(sha("abc", "123"));
    expect(Buffer.from(await powDigest("é", "0"))).toEqual(
      createHash("sha256")
        .update(Buffer.from([0xc3, 0xa9, 0x30]))
        .digest(),
    );
  });
});

describe("issueChallenge", () => {
  it("fills every field as documented", async () => {
    const ch = await issue(ringA, { realm: "my realm", difficulty: 12, credits: 7, ttlSeconds: 60 });
    expect(ch.realm).toBe("my realm");
    expect(ch.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Buffer.from(ch.id, "base64url")).toHaveLength(16);
    expect(ch.salt).toMatch(/^[0-9a-f]{32}$/);
    expect(ch.difficulty).toBe(12);
    expect(ch.algorithm).toBe("sha256");
    expect(ch.expires).toBe(Math.floor(NOW / 1000) + 60);
    expect(ch.credits).toBe(7);
    expect(ch.kid).toBe(ringA.signer.kid);
    expect(ch.signature).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("gives every challenge a fresh id and salt", async () => {
    const ids = new Set<string>();
    const salts = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const ch = await issue(ringA);
      ids.add(ch.id);
      salts.add(ch.salt);
    }
    expect(ids.size).toBe(50);
    expect(salts.size).toBe(50);
  });

  it("signs with the keyring's first key", async () => {
    expect((await issue(ringAB)).kid).toBe(ringA.signer.kid);
    expect((await issue(ringBA)).kid).toBe(ringB.signer.kid);
  });

  it("signs every field and the caller with HMAC-SHA256 of the secret", async () => {
    const ch = await issue(ringA);
    const fields = [
      "tollbooth/pow-challenge/v1",
      ch.realm,
      ch.id,
      ch.salt,
      String(ch.difficulty),
      ch.algorithm,
      String(ch.expires),
      String(ch.credits),
      ch.kid,
      CALLER,
    ];
    const canonical = fields.map((f) => `${Buffer.byteLength(f)}:${f}`).join("");
    expect(ch.signature).toBe(createHmac("sha256", SECRET_A).update(canonical).digest("base64url"));
  });
});

describe("formatChallenge", () => {
  it("writes a PowChallenge WWW-Authenticate value that parses back to the same fields", async () => {
    const ch = await issue(ringA, { realm: 'quote " and \\ backslash' });
    const text = formatChallenge(ch);
    expect(text.startsWith(`${POW_SCHEME} `)).toBe(true);
    expect(POW_SCHEME).toBe("PowChallenge");
    const parsed = parseAuthParams(text);
    expect(parsed?.scheme).toBe("PowChallenge");
    expect({ ...parsed?.params }).toEqual({
      realm: ch.realm,
      id: ch.id,
      salt: ch.salt,
      difficulty: String(ch.difficulty),
      algorithm: "sha256",
      expires: String(ch.expires),
      credits: String(ch.credits),
      kid: ch.kid,
      signature: ch.signature,
    });
    // Integers are tokens, strings are quoted-strings.
    expect(text).toContain(`difficulty=${ch.difficulty},`);
    expect(text).toContain(`expires=${ch.expires},`);
    expect(text).toContain(`salt="${ch.salt}"`);
  });
});

describe("issue → solve → verify", () => {
  it("accepts a brute-forced nonce", async () => {
    const ch = await issue(ringA);
    const nonce = solve(ch.salt, ch.difficulty);
    expect(await verifySolution(ringA, ch, nonce, CALLER, NOW)).toEqual({ ok: true });
  });

  it("accepts a nonce with more work than asked", async () => {
    const ch = await issue(ringA, { difficulty: 4 });
    expect(await verifySolution(ringA, ch, solve(ch.salt, 10), CALLER, NOW)).toEqual({ ok: true });
  });

  it("accepts the solution echoed as a Tollbooth-Solution header (params without scheme + nonce)", async () => {
    const ch = await issue(ringA);
    const nonce = solve(ch.salt, ch.difficulty);
    const header = `${formatChallenge(ch).slice(POW_SCHEME.length + 1)}, nonce="${nonce}"`;
    const params = parseAuthParams(header);
    expect(params?.scheme).toBeNull();
    const read = readSolution(params!.params);
    if (typeof read === "string") throw new Error(`readSolution refused: ${read}`);
    expect(read.challenge).toEqual(ch);
    expect(read.nonce).toBe(nonce);
    expect(await verifySolution(ringA, read.challenge, read.nonce, CALLER, NOW)).toEqual({ ok: true });
  });

  it("accepts the solution as a JSON body with JSON numbers (POST /verify)", async () => {
    const ch = await issue(ringA);
    const nonce = solve(ch.salt, ch.difficulty);
    const read = readSolution(JSON.parse(JSON.stringify({ ...ch, nonce })));
    if (typeof read === "string") throw new Error(`readSolution refused: ${read}`);
    expect(await verifySolution(ringA, read.challenge, read.nonce, CALLER, NOW)).toEqual({ ok: true });
  });

  it("accepts a challenge after key rotation ('A,B' issued, 'B,A' verifies)", async () => {
    const ch = await issue(ringAB);
    expect(await verifySolution(ringBA, ch, solve(ch.salt, ch.difficulty), CALLER, NOW)).toEqual({ ok: true });
  });

  it("refuses a challenge whose key is gone (unknown_key)", async () => {
    const ch = await issue(ringA);
    expect(await verifySolution(ringB, ch, solve(ch.salt, ch.difficulty), CALLER, NOW)).toEqual({ ok: false, reason: "unknown_key" });
  });
});

describe("verifySolution refuses", () => {
  let ch: PowChallenge;
  let nonce: string;
  beforeAll(async () => {
    ch = await issue(ringAB);
    nonce = solve(ch.salt, ch.difficulty);
    // Sanity: the untampered challenge verifies.
    expect(await verifySolution(ringAB, ch, nonce, CALLER, NOW)).toEqual({ ok: true });
  });

  /** Verify `tampered` with a nonce that really solves its (possibly changed) salt and difficulty. */
  async function check(tampered: PowChallenge, caller = CALLER) {
    const n =
      tampered.salt === ch.salt && tampered.difficulty >= ch.difficulty ? nonce : solve(tampered.salt, Math.min(tampered.difficulty, 16));
    return verifySolution(ringAB, tampered, n, caller, NOW);
  }

  const bad = { ok: false, reason: "bad_signature" };

  it("a changed realm", async () => expect(await check({ ...ch, realm: "other" })).toEqual(bad));
  it("a changed id (to redeem twice)", async () => {
    const other = (ch.id[0] === "A" ? "B" : "A") + ch.id.slice(1);
    expect(await check({ ...ch, id: other })).toEqual(bad);
  });
  it("a changed salt", async () =>
    expect(await check({ ...ch, salt: ch.salt.replace(/^./, (c) => (c === "0" ? "1" : "0")) })).toEqual(bad));
  it("a lowered difficulty", async () => expect(await check({ ...ch, difficulty: 1 })).toEqual(bad));
  it("a changed algorithm", async () => expect(await check({ ...ch, algorithm: "sha1" as "sha256" })).toEqual(bad));
  it("an extended expiry", async () => expect(await check({ ...ch, expires: ch.expires + 3600 })).toEqual(bad));
  it("raised credits", async () => expect(await check({ ...ch, credits: ch.credits + 1 })).toEqual(bad));
  it("the kid swapped to another valid key", async () => {
    expect(ringAB.byKid.has(ringB.signer.kid)).toBe(true);
    expect(await check({ ...ch, kid: ringB.signer.kid })).toEqual(bad);
  });
  it("an altered signature", async () => {
    const s = ch.signature;
    expect(await check({ ...ch, signature: s.slice(0, 5) + (s[5] === "x" ? "y" : "x") + s.slice(6) })).toEqual(bad);
    expect(await check({ ...ch, signature: "" })).toEqual(bad);
    expect(await check({ ...ch, signature: s.slice(0, 22) })).toEqual(bad);
  });
  it("'=' padding appended to the signature", async () => {
    expect(await check({ ...ch, signature: `${ch.signature}=` })).toEqual(bad);
  });
  it("a second spelling of the signature (non-zero trailing bits)", async () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const alt = ch.signature.slice(0, 42) + alphabet[alphabet.indexOf(ch.signature[42]!) | 2];
    expect(Buffer.from(alt, "base64url")).toEqual(Buffer.from(ch.signature, "base64url"));
    expect(await check({ ...ch, signature: alt })).toEqual(bad);
  });
  it("a challenge issued to another caller", async () => {
    expect(await check(ch, "ip:198.51.100.1")).toEqual(bad);
  });
  it("an unknown kid", async () => {
    expect(await check({ ...ch, kid: "AAAAAAAA" })).toEqual({ ok: false, reason: "unknown_key" });
  });

  it("an expired challenge, from its expiry second on", async () => {
    expect(await verifySolution(ringAB, ch, nonce, CALLER, ch.expires * 1000 - 1)).toEqual({ ok: true });
    expect(await verifySolution(ringAB, ch, nonce, CALLER, ch.expires * 1000)).toEqual({ ok: false, reason: "expired" });
    expect(await verifySolution(ringAB, ch, nonce, CALLER, ch.expires * 1000 + 3_600_000)).toEqual({ ok: false, reason: "expired" });
  });

  it("a nonce that does not meet the difficulty (insufficient_work)", async () => {
    const weak = weakNonce(ch.salt, ch.difficulty);
    expect(refZeroBits(sha(ch.salt, weak))).toBeLessThan(ch.difficulty);
    expect(await verifySolution(ringAB, ch, weak, CALLER, NOW)).toEqual({ ok: false, reason: "insufficient_work" });
  });

  it("a nonce one bit short of the difficulty", async () => {
    let n = 0;
    while (refZeroBits(sha(ch.salt, String(n))) !== ch.difficulty - 1) n++;
    expect(await verifySolution(ringAB, ch, String(n), CALLER, NOW)).toEqual({ ok: false, reason: "insufficient_work" });
  });

  it("a nonce that solves another challenge's salt", async () => {
    const other = await issue(ringAB);
    // A nonce that solves the other salt but (as almost all do) not this one.
    let n = 0;
    while (refZeroBits(sha(other.salt, String(n))) < ch.difficulty || refZeroBits(sha(ch.salt, String(n))) >= ch.difficulty) n++;
    expect(await verifySolution(ringAB, other, String(n), CALLER, NOW)).toEqual({ ok: true });
    expect(await verifySolution(ringAB, ch, String(n), CALLER, NOW)).toEqual({ ok: false, reason: "insufficient_work" });
  });
});

describe("field shifting (splicing characters between neighbouring fields)", () => {
  let ch: PowChallenge;
  beforeAll(async () => {
    ch = await issue(ringA, { difficulty: 16 });
  });

  /** Refuses the shifted challenge, given a nonce that really solves the shifted salt/difficulty. */
  async function expectRefused(shifted: PowChallenge) {
    const nonce = solve(shifted.salt, Math.min(shifted.difficulty, 12));
    const read = readSolution({ ...shifted, nonce });
    if (typeof read === "string") throw new Error(`readSolution refused the shifted challenge: ${read}`);
    expect(await verifySolution(ringA, read.challenge, read.nonce, CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
  }

  it("salt ‖ difficulty: salt + '1', difficulty 6 (same naive concatenation as difficulty 16)", async () => {
    const shifted = { ...ch, salt: `${ch.salt}1`, difficulty: 6 };
    expect(`${shifted.salt}${shifted.difficulty}`).toBe(`${ch.salt}${ch.difficulty}`);
    await expectRefused(shifted);
  });

  it("id ‖ salt: the first salt character moved into the id", async () => {
    const shifted = { ...ch, id: ch.id + ch.salt[0], salt: ch.salt.slice(1) };
    expect(shifted.id + shifted.salt).toBe(ch.id + ch.salt);
    await expectRefused(shifted);
  });

  it("realm ‖ id: the first id character moved into the realm", async () => {
    const shifted = { ...ch, realm: ch.realm + ch.id[0], id: ch.id.slice(1) };
    await expectRefused(shifted);
  });

  it("expires ‖ credits: the first credits digit moved into expires", async () => {
    const credits = String(ch.credits);
    const shifted = { ...ch, expires: Number(`${ch.expires}${credits[0]}`), credits: Number(credits.slice(1) || "0") };
    await expectRefused(shifted);
  });

  it("difficulty ‖ expires is not confusable either", async () => {
    // "16" ‖ "1800000120" vs "161" ‖ "800000120"
    const e = String(ch.expires);
    const shifted = { ...ch, difficulty: Number(`${ch.difficulty}${e[0]}`), expires: Number(e.slice(1)) };
    expect(`${shifted.difficulty}${shifted.expires}`).toBe(`${ch.difficulty}${ch.expires}`);
    await expectRefused(shifted);
  });
});

describe("readSolution", () => {
  let fields: Record<string, string>;
  beforeAll(async () => {
    fields = solutionParams(await issue(ringA), "12345");
  });

  it("reads every field and converts integers", () => {
    const read = readSolution(fields);
    if (typeof read === "string") throw new Error(read);
    expect(read.nonce).toBe("12345");
    expect(read.challenge.difficulty).toBe(Number(fields.difficulty));
    expect(read.challenge.expires).toBe(Number(fields.expires));
    expect(read.challenge.credits).toBe(Number(fields.credits));
    expect(read.challenge.signature).toBe(fields.signature);
  });

  it("refuses a missing field", () => {
    for (const key of ["realm", "id", "salt", "difficulty", "algorithm", "expires", "credits", "kid", "signature", "nonce"]) {
      const { [key]: _gone, ...rest } = fields;
      expect(readSolution(rest), key).toBe("malformed");
    }
  });

  it("refuses fields of the wrong type", () => {
    for (const key of ["realm", "id", "salt", "algorithm", "kid", "signature", "nonce"]) {
      expect(readSolution({ ...fields, [key]: 5 }), key).toBe("malformed");
      expect(readSolution({ ...fields, [key]: null }), key).toBe("malformed");
    }
    for (const key of ["difficulty", "expires", "credits"]) {
      expect(readSolution({ ...fields, [key]: true }), key).toBe("malformed");
      expect(readSolution({ ...fields, [key]: [1] }), key).toBe("malformed");
    }
  });

  it("refuses a nonce that is not 1–32 ASCII digits", () => {
    for (const nonce of ["", "12a", "0x10", "-1", "+1", "1.5", "1e3", " 1", "1 ", "١٢", "１２", "1".repeat(33)]) {
      expect(readSolution({ ...fields, nonce }), JSON.stringify(nonce)).toBe("malformed");
    }
    for (const nonce of ["0", "007", "1".repeat(32)]) expect(typeof readSolution({ ...fields, nonce }), nonce).toBe("object");
  });

  it("refuses integers with a sign, leading zeros, an exponent, a fraction or spaces", () => {
    for (const key of ["difficulty", "expires", "credits"]) {
      const v = fields[key]!;
      for (const text of [`+${v}`, `-${v}`, `0${v}`, `00${v}`, `${v}.0`, `${v}e0`, "1e3", ` ${v}`, `${v} `, "0x10", "", "٣"]) {
        expect(readSolution({ ...fields, [key]: text }), `${key}=${JSON.stringify(text)}`).toBe("malformed");
      }
    }
  });

  it("accepts JSON numbers for integers, but not fractions or negatives", () => {
    const read = readSolution({ ...fields, difficulty: 8, expires: Number(fields.expires), credits: 20 });
    expect(typeof read).toBe("object");
    expect(readSolution({ ...fields, difficulty: 8.5 })).toBe("malformed");
    expect(readSolution({ ...fields, credits: -1 })).toBe("malformed");
    expect(readSolution({ ...fields, expires: Number.NaN })).toBe("malformed");
  });

  it("refuses difficulty 0", () => {
    expect(readSolution({ ...fields, difficulty: "0" })).toBe("malformed");
    expect(readSolution({ ...fields, difficulty: 0 })).toBe("malformed");
  });

  it("refuses oversized fields", () => {
    for (const key of ["realm", "id", "salt"]) expect(readSolution({ ...fields, [key]: "a".repeat(257) }), key).toBe("malformed");
    expect(readSolution({ ...fields, difficulty: "257" })).toBe("malformed");
  });

  it("names an unsupported algorithm", () => {
    expect(readSolution({ ...fields, algorithm: "sha512" })).toBe("unsupported_algorithm");
    expect(readSolution({ ...fields, algorithm: "" })).toBe("unsupported_algorithm");
  });

  it("reads the algorithm name case-insensitively", () => {
    const read = readSolution({ ...fields, algorithm: "SHA256" });
    if (typeof read === "string") throw new Error(read);
    expect(read.challenge.algorithm).toBe("sha256");
  });

  it("refuses, rather than crashes on, integers too large to represent exactly", async () => {
    // Plain decimal, at most 16 digits, but above 2^53: Number() cannot hold them exactly.
    const ch = await issue(ringA);
    const nonce = solve(ch.salt, ch.difficulty);
    for (const key of ["expires", "credits"]) {
      for (const huge of ["9007199254740993", "9999999999999999"]) {
        const read = readSolution({ ...solutionParams(ch, nonce), [key]: huge });
        if (typeof read === "string") {
          expect(read, `${key}=${huge}`).toBe("malformed");
        } else {
          // Whatever is read must be refused, not throw (a thrown error is a 500 at the edge).
          await expect(verifySolution(ringA, read.challenge, read.nonce, CALLER, NOW), `${key}=${huge}`).resolves.toMatchObject({
            ok: false,
          });
        }
      }
    }
  });
});
