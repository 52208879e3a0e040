/**
 * Generated inputs for the auth-param reader and writer (shared/wire/auth-params.ts) and the
 * `Tollbooth-Solution` reader on top of it (`readSolution`, shared/credentials/challenge.ts):
 * format → parse round-trips any value; garbage never throws and never yields a verified
 * solution; duplicate names (in any case) are refused; token and quoted-string spellings,
 * optional whitespace and quoted-pairs are read as RFC 9110 says, and none of them can make
 * a solution verify for anything but the challenge that was issued.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { issueChallenge, verifySolution } from "../../../../shared/credentials/challenge.ts";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { formatAuthParams, parseAuthParams } from "../../../../shared/wire/auth-params.ts";
import { formatChallenge, type PowChallenge, readSolution } from "../../../../shared/wire/pow.ts";

const NOW = 1_800_000_000_000;
const CALLER = "ip:198.51.100.4";
const TCHAR = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-";
const RUNS = { numRuns: 400 };

/** RFC 9110 token. */
const tokenArb = fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 12 });
/** Values an attacker likes: quotes, backslashes, commas, '=', unicode, empty. */
const valueArb = fc.oneof(
  fc.string({ unit: fc.constantFrom('"', "\\", ",", "=", " ", "\t", "a", "é", "\u{1f600}", ";"), maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 12 }),
  fc.constant(""),
);

let ring: Keyring;
let challenge: PowChallenge;
let nonce: string;
/** The `Tollbooth-Solution` value a client sends: the challenge's parameters plus the nonce. */
let solution: string;

beforeAll(async () => {
  ring = await importKeyring("adversarial-auth-params-secret-0123");
  challenge = await issueChallenge(ring, { realm: "tollbooth", difficulty: 8, credits: 20, ttlSeconds: 120, caller: CALLER, nowMs: NOW });
  nonce = (await solvePow(challenge.salt, challenge.difficulty)).nonce;
  solution = `${formatChallenge(challenge).slice("PowChallenge ".length)}, nonce="${nonce}"`;
});

/** Parse → read → verify, as the gateway does with a `Tollbooth-Solution` header. */
async function redeemHeader(header: string): Promise<{ ok: true; challenge: PowChallenge; nonce: string } | { ok: false; reason: string }> {
  const parsed = parseAuthParams(header);
  if (!parsed) return { ok: false, reason: "malformed" };
  const read = readSolution(parsed.params);
  if (typeof read === "string") return { ok: false, reason: read };
  const check = await verifySolution(ring, read.challenge, read.nonce, CALLER, NOW);
  return check.ok ? { ok: true, ...read } : check;
}

describe("formatAuthParams → parseAuthParams round-trips", () => {
  it("any string or integer values under any distinct token names, with or without a scheme", () => {
    fc.assert(
      fc.property(
        fc.option(tokenArb, { nil: null }),
        fc.uniqueArray(fc.tuple(tokenArb, fc.oneof(valueArb, fc.integer())), { selector: ([k]) => k.toLowerCase(), maxLength: 6 }),
        (scheme, entries) => {
          fc.pre(scheme !== null || entries.length > 0);
          const header = formatAuthParams(scheme, Object.fromEntries(entries));
          const parsed = parseAuthParams(header);
          expect(parsed).not.toBeNull();
          expect(parsed!.scheme).toBe(scheme);
          expect({ ...parsed!.params }).toEqual(Object.fromEntries(entries.map(([k, v]) => [k.toLowerCase(), String(v)])));
        },
      ),
      RUNS,
    );
  });

  it("a parameter name that is not a token is a TypeError, never a broken header", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 6 }), (name) => {
        fc.pre(!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name));
        expect(() => formatAuthParams(null, { [name]: "v" })).toThrow(TypeError);
      }),
      RUNS,
    );
  });
});

describe("garbage", () => {
  const alphabet = fc.string({ unit: fc.constantFrom(...'abkz0=",\\ \t;é', "nonce", "salt", "PowChallenge"), maxLength: 40 });
  it("never throws: parseAuthParams returns null or string parameters; readSolution returns a reason or a solution", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 100 }), fc.string({ unit: "binary", maxLength: 60 }), alphabet), (garbage) => {
        const parsed = parseAuthParams(garbage);
        if (parsed === null) return;
        for (const value of Object.values(parsed.params)) expect(typeof value).toBe("string");
        const read = readSolution(parsed.params);
        if (typeof read === "string") expect(["malformed", "unsupported_algorithm"]).toContain(read);
        else expect(read.nonce).toMatch(/^[0-9]{1,32}$/);
      }),
      { numRuns: 1000 },
    );
  });

  it("never yields a verified solution, even when garbage is appended to or prepended to a real one", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 80 }), alphabet), async (garbage) => {
        const verdict = await redeemHeader(garbage);
        expect(verdict.ok).toBe(false);
        // Garbage around a real solution: refused, or read back as exactly the issued challenge.
        for (const header of [solution + garbage, garbage + solution]) {
          const around = await redeemHeader(header);
          if (around.ok) expect(around.challenge).toEqual(challenge);
        }
      }),
      RUNS,
    );
  });

  it("values longer than 8 KiB in total are refused without scanning", () => {
    expect(parseAuthParams(`a="${"x".repeat(8200)}"`)).toBeNull();
  });
});

describe("duplicate parameters and case games in names", () => {
  it("a parameter of the solution named again, in any case and either form, makes it malformed", async () => {
    const names = ["realm", "id", "salt", "difficulty", "algorithm", "expires", "credits", "kid", "signature", "nonce"];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...names),
        fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }),
        fc.oneof(tokenArb, valueArb),
        fc.boolean(),
        async (name, upper, value, quoted) => {
          const cased = [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join("");
          const extra = quoted || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value) ? `${cased}=${JSON.stringify(value)}` : `${cased}=${value}`;
          expect(await redeemHeader(`${solution}, ${extra}`)).toEqual({ ok: false, reason: "malformed" });
          expect(await redeemHeader(`${extra}, ${solution}`)).toEqual({ ok: false, reason: "malformed" });
        },
      ),
      RUNS,
    );
  });

  it("names in any case are the same names: the solution still verifies", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 200, maxLength: 200 }), async (upper) => {
        let n = 0;
        const recased = solution.replace(
          /(^|, )([a-z]+)=/g,
          (_, sep: string, name: string) => `${sep + [...name].map((c) => (upper[n++ % 200] ? c.toUpperCase() : c)).join("")}=`,
        );
        expect(await redeemHeader(recased)).toMatchObject({ ok: true, challenge });
      }),
      { numRuns: 50 },
    );
  });
});

describe("token vs quoted-string forms, whitespace and quoted-pairs (RFC 9110 §11.2, §5.6.4)", () => {
  /** The solution's parameters as [name, value] pairs. */
  const pairs = () => Object.entries(parseAuthParams(solution)!.params);

  it("any parameter written in either form, with optional whitespace and quoted-pairs, reads the same and verifies", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ quote: fc.boolean(), pairAll: fc.boolean(), ws: fc.constantFrom("", " ", "\t", "  \t") }), {
          minLength: 10,
          maxLength: 10,
        }),
        async (styles) => {
          const header = pairs()
            .map(([name, value], i) => {
              const { quote, pairAll, ws } = styles[i]!;
              const isToken = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value);
              const body =
                !quote && isToken ? value : `"${[...value].map((c) => (pairAll || c === '"' || c === "\\" ? `\\${c}` : c)).join("")}"`;
              return `${name}${ws}=${ws}${body}`;
            })
            .join(`${styles[0]!.ws},${styles[1]!.ws}`);
          expect(await redeemHeader(header)).toMatchObject({ ok: true, challenge, nonce });
        },
      ),
      { numRuns: 100 },
    );
  });

  it("integers with a sign, leading zeros, an exponent, a fraction or inner spaces are malformed in either form", async () => {
    const spoil = fc.constantFrom(
      (n: string) => `+${n}`,
      (n: string) => `0${n}`,
      (n: string) => `${n}e0`,
      (n: string) => `${n}.0`,
      (n: string) => `-${n}`,
      (n: string) => `${n[0]} ${n.slice(1)}`,
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("difficulty", "expires", "credits"), spoil, fc.boolean(), async (name, f, quoted) => {
        const value = f(String(challenge[name as "difficulty" | "expires" | "credits"]));
        const written = quoted || /[ ]/.test(value) ? JSON.stringify(value) : value;
        const header = solution.replace(new RegExp(`${name}=\\d+`), `${name}=${written}`);
        expect(header).not.toBe(solution);
        expect(await redeemHeader(header)).toMatchObject({ ok: false });
      }),
      RUNS,
    );
  });
});

describe("any single-character change of a real Tollbooth-Solution", () => {
  it("is refused, or reads back as the issued challenge with a nonce that really solves it", async () => {
    const charArb = fc.oneof(
      fc.constantFrom('"', "\\", ",", "=", " ", "0", "1", "9", "a", "A", "-", "_", "+", "/"),
      fc.string({ minLength: 1, maxLength: 1 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(), charArb, fc.constantFrom("replace", "insert", "delete"), async (pos, ch, op) => {
        const i = pos % solution.length;
        const header =
          op === "replace"
            ? solution.slice(0, i) + ch + solution.slice(i + 1)
            : op === "insert"
              ? solution.slice(0, i) + ch + solution.slice(i)
              : solution.slice(0, i) + solution.slice(i + 1);
        const verdict = await redeemHeader(header);
        if (verdict.ok) {
          expect(verdict.challenge).toEqual(challenge);
          expect(await verifySolution(ring, challenge, verdict.nonce, CALLER, NOW)).toEqual({ ok: true });
        } else {
          expect(["malformed", "unsupported_algorithm", "unknown_key", "bad_signature", "expired", "insufficient_work"]).toContain(
            verdict.reason,
          );
        }
      }),
      { numRuns: 1000 },
    );
  });
});
