/**
 * Generated tampering of a signed `PowChallenge` (shared/credentials/challenge.ts): each field
 * changed one at a time to any other value a forger might pick, characters shifted between
 * neighbouring fields, the signature re-spelled — `verifySolution` refuses with the documented
 * reason (`bad_signature`, `unknown_key`; `readSolution` says `malformed` or
 * `unsupported_algorithm` before that), both for the object and through the wire
 * (`Tollbooth-Solution` header and the JSON body of `/verify`).
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { issueChallenge, verifySolution } from "../../../../shared/credentials/challenge.ts";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { parseAuthParams } from "../../../../shared/wire/auth-params.ts";
import { formatChallenge, type PowChallenge, readSolution } from "../../../../shared/wire/pow.ts";

const NOW = 1_800_000_000_000;
const CALLER = "api-key:0f0f0f0f";
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const RUNS = { numRuns: 200 };

let ring: Keyring;
/** The same two secrets in the other order: another valid kid the gateway knows. */
let ringRotated: Keyring;
let ch: PowChallenge;
let nonce: string;

beforeAll(async () => {
  ring = await importKeyring("adversarial-challenge-secret-A-0123,adversarial-challenge-secret-B-0123");
  ringRotated = await importKeyring("adversarial-challenge-secret-B-0123,adversarial-challenge-secret-A-0123");
  ch = await issueChallenge(ring, { realm: "tollbooth", difficulty: 8, credits: 20, ttlSeconds: 120, caller: CALLER, nowMs: NOW });
  nonce = (await solvePow(ch.salt, ch.difficulty)).nonce;
  // The untampered challenge verifies: every refusal below is caused by the tampering.
  expect(await verifySolution(ring, ch, nonce, CALLER, NOW)).toEqual({ ok: true });
});

/**
 * The verdict on a tampered challenge with the honest nonce. The work is checked after the
 * key, the signature and the expiry, so the reason names what the tampering broke.
 */
async function verdictFor(tampered: PowChallenge, caller = CALLER): Promise<string> {
  const result = await verifySolution(ring, tampered, nonce, caller, NOW);
  return result.ok ? "ok" : result.reason;
}

describe("one field tampered at a time → bad_signature", () => {
  const other = <T>(arb: fc.Arbitrary<T>, field: keyof PowChallenge) => arb.filter((v) => v !== ch[field]);

  it("difficulty lowered (or raised)", async () => {
    await fc.assert(
      fc.asyncProperty(other(fc.integer({ min: 1, max: 32 }), "difficulty"), async (difficulty) => {
        expect(await verdictFor({ ...ch, difficulty })).toBe("bad_signature");
      }),
      RUNS,
    );
  });

  it("expiry extended (or moved anywhere)", async () => {
    await fc.assert(
      fc.asyncProperty(other(fc.integer({ min: NOW / 1000, max: 2 ** 40 }), "expires"), async (expires) => {
        expect(await verdictFor({ ...ch, expires })).toBe("bad_signature");
      }),
      RUNS,
    );
  });

  it("credits raised (or changed)", async () => {
    await fc.assert(
      fc.asyncProperty(other(fc.nat({ max: Number.MAX_SAFE_INTEGER }), "credits"), async (credits) => {
        expect(await verdictFor({ ...ch, credits })).toBe("bad_signature");
      }),
      RUNS,
    );
  });

  it("realm, id or salt changed to any other string", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("realm", "id", "salt" as const), fc.string({ maxLength: 40 }), async (field, value) => {
        fc.pre(value !== ch[field]);
        expect(await verdictFor({ ...ch, [field]: value })).toBe("bad_signature");
      }),
      RUNS,
    );
  });

  it("the caller swapped for any other identity", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "binary", maxLength: 60 }), async (caller) => {
        fc.pre(caller !== CALLER);
        expect(await verdictFor(ch, caller)).toBe("bad_signature");
      }),
      { numRuns: 100 },
    );
  });

  it("kid swapped to another key the gateway has → bad_signature; to any other kid → unknown_key", async () => {
    expect(ringRotated.signer.kid).not.toBe(ch.kid);
    expect(await verdictFor({ ...ch, kid: ringRotated.signer.kid })).toBe("bad_signature");
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 12 }), async (kid) => {
        fc.pre(!ring.byKid.has(kid));
        expect(await verdictFor({ ...ch, kid })).toBe("unknown_key");
      }),
      RUNS,
    );
  });

  it("algorithm changed: any other name is unsupported_algorithm when read; 'SHA256' in any case reads as sha256 and verifies", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 10 }), (algorithm) => {
        const read = readSolution({ ...ch, algorithm, nonce });
        if (algorithm.toLowerCase() === "sha256") expect(read).toMatchObject({ challenge: ch });
        else expect(read).toBe("unsupported_algorithm");
      }),
      RUNS,
    );
  });
});

describe("the signature re-spelled → bad_signature", () => {
  it("'=' padding, the standard alphabet, whitespace, truncation or extension", async () => {
    const spellings = fc.oneof(
      fc.integer({ min: 1, max: 3 }).map((n) => ch.signature + "=".repeat(n)),
      fc.constant(ch.signature.replaceAll("-", "+").replaceAll("_", "/")),
      fc
        .tuple(fc.nat(ch.signature.length), fc.constantFrom(" ", "\t", "\n"))
        .map(([i, ws]) => ch.signature.slice(0, i) + ws + ch.signature.slice(i)),
      fc.integer({ min: 1, max: 43 }).map((n) => ch.signature.slice(0, -n)),
      fc.string({ unit: fc.constantFrom(...B64URL), minLength: 1, maxLength: 4 }).map((s) => ch.signature + s),
      fc.string({ unit: fc.constantFrom(...B64URL), minLength: 43, maxLength: 43 }),
    );
    await fc.assert(
      fc.asyncProperty(spellings, async (signature) => {
        fc.pre(signature !== ch.signature);
        expect(await verdictFor({ ...ch, signature })).toBe("bad_signature");
      }),
      RUNS,
    );
  });

  it("non-zero trailing bits (a second spelling of the same 32 bytes)", async () => {
    const last = B64URL.indexOf(ch.signature.at(-1)!);
    for (let t = 1; t < 4; t++)
      expect(await verdictFor({ ...ch, signature: ch.signature.slice(0, -1) + B64URL[last ^ t] })).toBe("bad_signature");
  });
});

describe("characters shifted between neighbouring fields → bad_signature", () => {
  // The signed order: realm, id, salt, difficulty, algorithm, expires, credits, kid.
  const ORDER = ["realm", "id", "salt", "difficulty", "algorithm", "expires", "credits", "kid"] as const;
  it("the last k characters of a field moved to the front of the next, or the first k of a field to the end of the previous", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(ORDER.length - 2), fc.integer({ min: 1, max: 4 }), fc.boolean(), async (at, k, forward) => {
        const [a, b] = [ORDER[at]!, ORDER[at + 1]!];
        let [left, right] = [String(ch[a]), String(ch[b])];
        if (forward) [left, right] = [left.slice(0, -k), left.slice(-k) + right];
        else [left, right] = [left + right.slice(0, k), right.slice(k)];
        const fields: Record<string, unknown> = { ...ch, [a]: left, [b]: right, nonce };
        const read = readSolution(fields);
        // Shifting may break a field's syntax (read refuses it) — or produce a readable challenge the signature refuses.
        if (typeof read === "string") expect(["malformed", "unsupported_algorithm"]).toContain(read);
        else expect(await verdictFor(read.challenge)).toMatch(/^(bad_signature|unknown_key)$/);
      }),
      RUNS,
    );
  });
});

describe("through the wire: one parameter of the Tollbooth-Solution header, or of the /verify body, tampered", () => {
  const FIELDS = ["realm", "id", "salt", "difficulty", "algorithm", "expires", "credits", "kid", "signature"] as const;
  const valueArb = fc.oneof(
    fc.string({ maxLength: 30 }),
    fc.nat().map(String),
    fc.constantFrom("", "0", "00", "-1", "1e3", "sha1", "SHA-256", "null"),
  );

  it("is refused with a documented reason, never verified", async () => {
    const header = `${formatChallenge(ch).slice("PowChallenge ".length)}, nonce="${nonce}"`;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...FIELDS), valueArb, fc.boolean(), async (field, value, json) => {
        fc.pre(value !== String(ch[field]) && !(field === "algorithm" && value.toLowerCase() === "sha256"));
        let params: Record<string, unknown> | null;
        if (json) params = { ...ch, nonce, [field]: /^\d{1,15}$/.test(value) && typeof ch[field] === "number" ? Number(value) : value };
        // A function replacement: a string one would read `$`` or `$&` inside the value as replacement patterns.
        else
          params =
            parseAuthParams(
              header.replace(
                new RegExp(`(^|, )${field}=("[^"]*"|[^,]*)`),
                (_m, lead: string) => `${lead}${field}=${JSON.stringify(value)}`,
              ),
            )?.params ?? null;
        expect(params).not.toBeNull();
        const read = readSolution(params!);
        if (typeof read === "string") {
          expect(["malformed", "unsupported_algorithm"]).toContain(read);
          return;
        }
        const verdict = await verifySolution(ring, read.challenge, read.nonce, CALLER, NOW);
        expect(verdict).toMatchObject({ ok: false });
        expect(["bad_signature", "unknown_key"]).toContain((verdict as { reason: string }).reason);
      }),
      { numRuns: 400 },
    );
  });
});
