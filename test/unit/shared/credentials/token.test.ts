/**
 * Access tokens (shared/credentials/token.ts): `tb1.<kid>.<claims>.<HMAC-SHA256>` as
 * documented, valid only for the caller it names and only before `exp`; tampering, second
 * spellings, an unknown kid and unreadable claims are refused with their reason, across key
 * rotation.
 */
import { createHmac } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { newTokenId, signToken, type TokenClaims, verifyToken } from "../../../../shared/credentials/token.ts";

const SECRET_A = "token-secret-A-0123456789";
const SECRET_B = "token-secret-B-0123456789";
const LABEL = "tollbooth/access-token/v1";
const NOW = 1_800_000_000_000;
const CALLER = "auth:0123456789abcdef0123456789abcdef";

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

const claims = (over: Partial<TokenClaims> = {}): TokenClaims => ({
  sub: CALLER,
  jti: newTokenId(),
  exp: NOW / 1000 + 300,
  cr: 20,
  ...over,
});

/** canonical() as documented in shared/wire/encoding.ts, written out independently. */
const canon = (fields: string[]) => fields.map((f) => `${Buffer.byteLength(f, "utf8")}:${f}`).join("");

/** Sign an arbitrary payload text the way the documented format says, with node:crypto. */
function forge(secret: string, kid: string, payloadText: string): string {
  const sig = createHmac("sha256", secret)
    .update(canon([LABEL, kid, payloadText]))
    .digest("base64url");
  return `tb1.${kid}.${payloadText}.${sig}`;
}

const b64 = (json: unknown) => Buffer.from(JSON.stringify(json), "utf8").toString("base64url");

/** base64url of the claims with "=" padding added (jti lengthened until padding is needed). */
/** Standard-alphabet base64 (with a '+' or '/') of the claims, without padding. */
function standardAlphabet(c: Record<string, unknown>): string {
  for (let i = 0; ; i++) {
    const text = Buffer.from(JSON.stringify({ ...c, jti: `${c.jti}${"?~>".repeat(i)}` }))
      .toString("base64")
      .replace(/=+$/, "");
    if (/[+/]/.test(text)) return text;
  }
}

function padded(c: Record<string, unknown>): string {
  let text = b64(c);
  for (let extra = "x"; text.length % 4 === 0; extra += "x") text = b64({ ...c, jti: `${c.jti}${extra}` });
  const out = text + "=".repeat(4 - (text.length % 4));
  expect(out).toMatch(/=$/);
  return out;
}

describe("newTokenId", () => {
  it("is 22 base64url characters (16 random bytes), different each time", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const id = newTokenId();
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(Buffer.from(id, "base64url")).toHaveLength(16);
      ids.add(id);
    }
    expect(ids.size).toBe(100);
  });
});

describe("signToken", () => {
  it("writes tb1.<kid>.<base64url JSON claims>.<base64url HMAC-SHA256 over canonical([label, kid, payload])>", async () => {
    const c = claims();
    const token = await signToken(ringA, c);
    const parts = token.split(".");
    expect(parts).toHaveLength(4);
    const [prefix, kid, payload, sig] = parts as [string, string, string, string];
    expect(prefix).toBe("tb1");
    expect(kid).toBe(ringA.signer.kid);
    expect(payload).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(JSON.parse(Buffer.from(payload, "base64url").toString("utf8"))).toEqual({ sub: c.sub, jti: c.jti, exp: c.exp, cr: c.cr });
    expect(sig).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(token).toBe(forge(SECRET_A, kid, payload));
  });

  it("carries only the four claims, and `pd: 1` for a token money bought", async () => {
    const keys = async (c: TokenClaims) =>
      Object.keys(JSON.parse(Buffer.from((await signToken(ringA, c)).split(".")[2]!, "base64url").toString("utf8"))).sort();
    expect(await keys({ ...claims(), extra: "x" } as TokenClaims)).toEqual(["cr", "exp", "jti", "sub"]);
    expect(await keys({ ...claims(), pd: 1 })).toEqual(["cr", "exp", "jti", "pd", "sub"]);
  });
});

describe("what bought a token (`pd`, its class at the origin ceiling)", () => {
  it("a token money bought verifies with pd: 1; one signed without it (work, or before pd existed) verifies as before, without", async () => {
    const paid = claims({ pd: 1 });
    expect(await verifyToken(ringA, await signToken(ringA, paid), CALLER, NOW)).toEqual({ ok: true, claims: paid });
    const old = claims();
    expect(await verifyToken(ringA, forge(SECRET_A, ringA.signer.kid, b64(old)), CALLER, NOW)).toEqual({ ok: true, claims: old });
  });

  it("pd cannot be added to a token a proof of work bought: the signature covers it", async () => {
    const [, kid, payload, sig] = (await signToken(ringA, claims())).split(".") as [string, string, string, string];
    const raised = b64({ ...JSON.parse(Buffer.from(payload, "base64url").toString("utf8")), pd: 1 });
    expect(await verifyToken(ringA, `tb1.${kid}.${raised}.${sig}`, CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
  });
});

describe("verifyToken", () => {
  it("accepts a token it signed and returns its claims", async () => {
    const c = claims({ sub: "ip:2001:db8:1:2::/64" });
    const token = await signToken(ringA, c);
    expect(await verifyToken(ringA, token, c.sub, NOW)).toEqual({ ok: true, claims: c });
  });

  it("accepts a token signed independently per the documented format", async () => {
    const c = claims();
    const token = forge(SECRET_A, ringA.signer.kid, b64(c));
    expect(await verifyToken(ringA, token, CALLER, NOW)).toEqual({ ok: true, claims: c });
  });

  it("round-trips non-ASCII identities", async () => {
    const c = claims({ sub: "key:é€😀" });
    expect(await verifyToken(ringA, await signToken(ringA, c), c.sub, NOW)).toEqual({ ok: true, claims: c });
  });

  describe("tampering", () => {
    let token: string;
    let parts: [string, string, string, string];
    beforeAll(async () => {
      token = await signToken(ringA, claims());
      parts = token.split(".") as typeof parts;
    });
    const join = (p: string[]) => p.join(".");

    it("refuses a payload with raised credits (bad_signature)", async () => {
      const c = JSON.parse(Buffer.from(parts[2], "base64url").toString("utf8"));
      const raised = join([parts[0], parts[1], b64({ ...c, cr: 1_000_000 }), parts[3]]);
      expect(await verifyToken(ringA, raised, CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
    });

    it("refuses a payload rebound to another caller or extended", async () => {
      const c = JSON.parse(Buffer.from(parts[2], "base64url").toString("utf8"));
      const other = join([parts[0], parts[1], b64({ ...c, sub: "ip:203.0.113.9" }), parts[3]]);
      expect(await verifyToken(ringA, other, "ip:203.0.113.9", NOW)).toEqual({ ok: false, reason: "bad_signature" });
      const longer = join([parts[0], parts[1], b64({ ...c, exp: c.exp + 86400 }), parts[3]]);
      expect(await verifyToken(ringA, longer, CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
    });

    it("refuses an altered signature (bad_signature)", async () => {
      const sig = parts[3];
      const swapped = sig.slice(0, 10) + (sig[10] === "A" ? "B" : "A") + sig.slice(11);
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), swapped]), CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), sig.slice(0, 42)]), CALLER, NOW)).toEqual({
        ok: false,
        reason: "bad_signature",
      });
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), ""]), CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), `${sig}AAAA`]), CALLER, NOW)).toEqual({
        ok: false,
        reason: "bad_signature",
      });
    });

    it("refuses padding games: '=' appended to the signature or payload", async () => {
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), `${parts[3]}=`]), CALLER, NOW)).toEqual({
        ok: false,
        reason: "bad_signature",
      });
      expect(await verifyToken(ringA, join([parts[0], parts[1], `${parts[2]}=`, parts[3]]), CALLER, NOW)).toEqual({
        ok: false,
        reason: "bad_signature",
      });
    });

    it("refuses a second spelling of the signature (non-zero trailing bits)", async () => {
      // 43 characters carry 258 bits for 256: the last character's 2 low bits must be zero.
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const last = alphabet.indexOf(parts[3].at(-1)!);
      expect(last & 3).toBe(0);
      const alt = parts[3].slice(0, 42) + alphabet[last | 1];
      expect(Buffer.from(alt, "base64url")).toEqual(Buffer.from(parts[3], "base64url"));
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), alt]), CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
    });

    it("refuses the standard base64 alphabet in the signature", async () => {
      const std = Buffer.from(parts[3], "base64url").toString("base64");
      expect(await verifyToken(ringA, join([...parts.slice(0, 3), std]), CALLER, NOW)).toMatchObject({ ok: false });
    });

    it("refuses a wrong prefix (malformed)", async () => {
      for (const prefix of ["tb2", "TB1", "", "tb1 "]) {
        expect(await verifyToken(ringA, join([prefix, ...parts.slice(1)]), CALLER, NOW), prefix).toEqual({
          ok: false,
          reason: "malformed",
        });
      }
    });

    it("refuses an extra or a missing dot segment (malformed)", async () => {
      expect(await verifyToken(ringA, `${token}.x`, CALLER, NOW)).toEqual({ ok: false, reason: "malformed" });
      expect(await verifyToken(ringA, `${token}.`, CALLER, NOW)).toEqual({ ok: false, reason: "malformed" });
      expect(await verifyToken(ringA, join(parts.slice(0, 3)), CALLER, NOW)).toEqual({ ok: false, reason: "malformed" });
      expect(await verifyToken(ringA, "", CALLER, NOW)).toEqual({ ok: false, reason: "malformed" });
    });

    it("refuses a kid no key has (unknown_key)", async () => {
      expect(await verifyToken(ringA, join([parts[0], "AAAAAAAA", parts[2], parts[3]]), CALLER, NOW)).toEqual({
        ok: false,
        reason: "unknown_key",
      });
    });
  });

  it("refuses a token bound to another caller (wrong_caller)", async () => {
    const token = await signToken(ringA, claims());
    expect(await verifyToken(ringA, token, "ip:203.0.113.7", NOW)).toEqual({ ok: false, reason: "wrong_caller" });
    expect(await verifyToken(ringA, token, CALLER.toUpperCase(), NOW)).toEqual({ ok: false, reason: "wrong_caller" });
  });

  it("expires at exp (unix seconds), not a millisecond later", async () => {
    const c = claims();
    const token = await signToken(ringA, c);
    expect((await verifyToken(ringA, token, CALLER, c.exp * 1000 - 1)).ok).toBe(true);
    expect(await verifyToken(ringA, token, CALLER, c.exp * 1000)).toEqual({ ok: false, reason: "expired" });
    expect(await verifyToken(ringA, token, CALLER, c.exp * 1000 + 86_400_000)).toEqual({ ok: false, reason: "expired" });
  });

  it("refuses tokens longer than 2048 characters", async () => {
    const token = forge(SECRET_A, ringA.signer.kid, b64(claims({ sub: "x".repeat(2000) })));
    expect(token.length).toBeGreaterThan(2048);
    expect(await verifyToken(ringA, token, "x".repeat(2000), NOW)).toEqual({ ok: false, reason: "malformed" });
  });

  describe("correctly signed but unreadable claims are malformed", () => {
    const cases: Array<[string, string]> = [
      ["not JSON", Buffer.from("not json").toString("base64url")],
      ["JSON null", b64(null)],
      ["an array", b64([1, 2])],
      ["missing cr", b64({ sub: CALLER, jti: "j", exp: NOW / 1000 + 60 })],
      ["exp as a string", b64({ sub: CALLER, jti: "j", exp: String(NOW / 1000 + 60), cr: 1 })],
      ["fractional exp", b64({ sub: CALLER, jti: "j", exp: NOW / 1000 + 60.5, cr: 1 })],
      ["sub not a string", b64({ sub: 5, jti: "j", exp: NOW / 1000 + 60, cr: 1 })],
      ["invalid UTF-8", Buffer.from([0x7b, 0xff, 0x7d]).toString("base64url")],
      ["payload with padding", padded({ sub: CALLER, jti: "j", exp: NOW / 1000 + 60, cr: 1 })],
      ["payload in the standard alphabet", standardAlphabet({ sub: CALLER, jti: "j", exp: NOW / 1000 + 60, cr: 1 })],
    ];
    it.each(cases)("%s", async (_name, payload) => {
      expect(await verifyToken(ringA, forge(SECRET_A, ringA.signer.kid, payload), CALLER, NOW)).toEqual({ ok: false, reason: "malformed" });
    });
  });

  describe("key rotation", () => {
    it("keyring 'A,B' signs with A", async () => {
      const token = await signToken(ringAB, claims());
      expect(token.split(".")[1]).toBe(ringA.signer.kid);
      expect((await verifyToken(ringA, token, CALLER, NOW)).ok).toBe(true);
    });

    it("keyring 'B,A' verifies a token signed by 'A,B'", async () => {
      const c = claims();
      const token = await signToken(ringAB, c);
      expect(await verifyToken(ringBA, token, CALLER, NOW)).toEqual({ ok: true, claims: c });
    });

    it("keyring 'B' alone refuses it (unknown_key)", async () => {
      const token = await signToken(ringAB, claims());
      expect(await verifyToken(ringB, token, CALLER, NOW)).toEqual({ ok: false, reason: "unknown_key" });
    });

    it("a token with A's kid but B's signature is refused (bad_signature)", async () => {
      const forged = forge(SECRET_B, ringA.signer.kid, b64(claims()));
      expect(await verifyToken(ringAB, forged, CALLER, NOW)).toEqual({ ok: false, reason: "bad_signature" });
    });
  });
});
