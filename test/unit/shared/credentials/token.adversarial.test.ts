/**
 * Generated attacks on the access token (shared/credentials/token.ts): arbitrary strings, and a
 * real token changed in every way a forger might try — one character, swapped segments,
 * padding, the standard base64 alphabet, whitespace, extra segments, second spellings (non-zero
 * trailing bits), payloads re-signed with a key the gateway does not have — never verify. A
 * real token verifies for its own caller only.
 */
import { createHmac } from "node:crypto";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { newTokenId, signToken, type TokenError, verifyToken } from "../../../../shared/credentials/token.ts";

const NOW = 1_800_000_000_000;
const CALLER = "auth:0123456789abcdef0123456789abcdef";
const REASONS: TokenError[] = ["malformed", "unknown_key", "bad_signature", "expired", "wrong_caller"];
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const RUNS = { numRuns: 300 };

let ring: Keyring;
let other: Keyring;
let token: string;

beforeAll(async () => {
  ring = await importKeyring("adversarial-token-secret-0123456789");
  other = await importKeyring("someone-else-entirely-0123456789");
  token = await signToken(ring, { sub: CALLER, jti: newTokenId(), exp: NOW / 1000 + 300, cr: 20 });
});

async function refused(candidate: string, caller = CALLER): Promise<TokenError> {
  const result = await verifyToken(ring, candidate, caller, NOW);
  if (result.ok) throw new Error(`verified: ${JSON.stringify(candidate)}`);
  expect(REASONS).toContain(result.reason);
  return result.reason;
}

/** Any character a forger might put in: base64url, the standard alphabet, padding, dots, whitespace, unicode. */
const charArb = fc.oneof(
  fc.constantFrom(...B64URL, "+", "/", "=", ".", " ", "\t", "\n", "\u00a0", "é", "\u{1f600}", "\0"),
  fc.string({ minLength: 1, maxLength: 1 }),
);

describe("verifyToken refuses what it did not sign", () => {
  it("arbitrary strings", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), (s) => refused(s).then(() => undefined)),
      { numRuns: 500 },
    );
  });

  it("well-shaped strings: tb1.<the real kid>.<random base64url>.<random 43-character base64url>", async () => {
    const b64 = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...B64URL), minLength: min, maxLength: max });
    await fc.assert(
      fc.asyncProperty(b64(0, 200), b64(43, 43), async (payload, sig) => {
        expect(await refused(`tb1.${ring.signer.kid}.${payload}.${sig}`)).toBe("bad_signature");
      }),
      { numRuns: 500 },
    );
  });

  it("a real token with any one character replaced, inserted or deleted", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), charArb, fc.constantFrom("replace", "insert", "delete"), async (pos, ch, op) => {
        const i = pos % (token.length + (op === "insert" ? 1 : 0));
        const changed =
          op === "replace"
            ? token.slice(0, i) + ch + token.slice(i + 1)
            : op === "insert"
              ? token.slice(0, i) + ch + token.slice(i)
              : token.slice(0, i) + token.slice(i + 1);
        fc.pre(changed !== token);
        await refused(changed);
      }),
      { numRuns: 1000 },
    );
  });

  it("a real token with its segments in any other order", async () => {
    const parts = token.split(".");
    await fc.assert(
      fc.asyncProperty(fc.shuffledSubarray(parts, { minLength: 4, maxLength: 4 }), async (perm) => {
        fc.pre(perm.join(".") !== token);
        await refused(perm.join("."));
      }),
      RUNS,
    );
  });

  it("'=' padding after any segment, and extra or missing segments", async () => {
    const parts = token.split(".");
    await fc.assert(
      fc.asyncProperty(fc.nat(3), fc.integer({ min: 1, max: 3 }), async (seg, n) => {
        const padded = parts.map((p, i) => (i === seg ? p + "=".repeat(n) : p));
        await refused(padded.join("."));
      }),
      RUNS,
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: fc.constantFrom(...B64URL), maxLength: 8 }), { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        async (extra, front) => {
          expect(await refused(front ? [...extra, token].join(".") : [token, ...extra].join("."))).toBe("malformed");
        },
      ),
      RUNS,
    );
    for (let drop = 0; drop < 4; drop++) expect(await refused(parts.filter((_, i) => i !== drop).join("."))).toBe("malformed");
  });

  it("the standard base64 alphabet ('+', '/') in place of '-', '_', and whitespace anywhere (even at the ends)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.constantFrom(" ", "\t", "\r\n", "\u00a0", "\u2028"), async (pos, ws) => {
        const i = pos % (token.length + 1);
        await refused(token.slice(0, i) + ws + token.slice(i));
      }),
      RUNS,
    );
    const standard = token.replaceAll("-", "+").replaceAll("_", "/");
    if (standard !== token) await refused(standard);
    // A token whose signature has '-' or '_' exists among a few; each such spelling is refused.
    for (let n = 0; n < 20; n++) {
      const t = await signToken(ring, { sub: CALLER, jti: newTokenId(), exp: NOW / 1000 + 300, cr: 20 });
      const [head, sig] = [t.slice(0, t.lastIndexOf(".") + 1), t.slice(t.lastIndexOf(".") + 1)];
      for (const [from, to] of [
        ["-", "+"],
        ["_", "/"],
      ] as const) {
        if (sig.includes(from)) expect(await refused(head + sig.replace(from, to))).toBe("bad_signature");
      }
    }
  });

  it("a second spelling of the signature or payload (non-zero trailing bits)", async () => {
    const parts = token.split(".");
    for (const seg of [2, 3]) {
      const text = parts[seg]!;
      const bits = (text.length * 6) % 8; // trailing bits in the last character
      expect(bits).toBeGreaterThan(0);
      const last = B64URL.indexOf(text.at(-1)!);
      for (let t = 1; t < 1 << bits; t++) {
        const spelled = parts.map((p, i) => (i === seg ? p.slice(0, -1) + B64URL[last ^ t] : p)).join(".");
        expect(await refused(spelled)).toBe("bad_signature");
      }
    }
  });

  it("claims chosen by the forger (more credits, another sub, later exp), signed with a key the gateway does not have", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string(), fc.nat(), fc.nat(), async (sub, cr, exp) => {
        const forged = await signToken(other, { sub, jti: newTokenId(), exp, cr });
        // Either the other key's kid (unknown) or, re-labelled, the real kid with a wrong signature.
        expect(await refused(forged, sub)).toBe("unknown_key");
        const relabelled = forged
          .split(".")
          .map((p, i) => (i === 1 ? ring.signer.kid : p))
          .join(".");
        expect(await refused(relabelled, sub)).toBe("bad_signature");
      }),
      RUNS,
    );
  });

  it("claims chosen by the forger under the real signature", async () => {
    const [prefix, kid, , sig] = token.split(".");
    await fc.assert(
      fc.asyncProperty(fc.record({ sub: fc.string(), jti: fc.string(), exp: fc.integer(), cr: fc.integer() }), async (claims) => {
        const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
        expect(await refused(`${prefix}.${kid}.${payload}.${sig}`, claims.sub)).toBe("bad_signature");
      }),
      RUNS,
    );
  });
});

describe("a valid token verifies for its own caller only", () => {
  it("any caller identity round-trips, and any other caller is wrong_caller", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: "binary", maxLength: 100 }),
        fc.string({ unit: "binary", maxLength: 100 }),
        async (sub, someone) => {
          fc.pre(sub !== someone);
          const t = await signToken(ring, { sub, jti: newTokenId(), exp: NOW / 1000 + 1, cr: 5 });
          const mine = await verifyToken(ring, t, sub, NOW);
          expect(mine).toMatchObject({ ok: true, claims: { sub, exp: NOW / 1000 + 1, cr: 5 } });
          expect(await refused(t, someone)).toBe("wrong_caller");
        },
      ),
      { numRuns: 100 },
    );
  });

  it("an independent HMAC over the documented format is accepted (the property above is not circular)", async () => {
    const secret = "adversarial-token-secret-0123456789";
    const payload = Buffer.from(JSON.stringify({ sub: CALLER, jti: "j", exp: NOW / 1000 + 5, cr: 1 })).toString("base64url");
    const kid = ring.signer.kid;
    const data = ["tollbooth/access-token/v1", kid, payload].map((f) => `${Buffer.byteLength(f)}:${f}`).join("");
    const sig = createHmac("sha256", secret).update(data).digest("base64url");
    expect(await verifyToken(ring, `tb1.${kid}.${payload}.${sig}`, CALLER, NOW)).toMatchObject({ ok: true });
  });
});
