/**
 * shared/credentials/l402.ts: minting, the challenge, reading and verifying a credential
 * (docs/wire-contract.md §10). The npm `macaroon` package is the independent peer: it
 * verifies what we mint and mints (and attenuates) what we verify; the root key and the
 * caller tag are recomputed here with node:crypto from their documented definitions.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import {
  callerTag,
  decodeIdentifier,
  encodeIdentifier,
  formatL402Challenge,
  L402_SCHEMES,
  type L402Credential,
  l402RootKey,
  mintL402,
  parseL402Authorization,
  readL402Credential,
  verifyL402,
} from "../../../../shared/credentials/l402.ts";
import { addCaveat, decodeMacaroon, encodeMacaroon, type Macaroon, toBase64 } from "../../../../shared/credentials/macaroon.ts";
import { parseAuthParams } from "../../../../shared/wire/auth-params.ts";

interface PeerMacaroon {
  readonly location: string | null;
  readonly identifier: Uint8Array;
  readonly signature: Uint8Array;
  readonly caveats: { identifier: Uint8Array; location?: string; vid?: Uint8Array }[];
  addFirstPartyCaveat(caveat: Uint8Array | string): void;
  addThirdPartyCaveat(rootKey: Uint8Array, caveatId: Uint8Array | string, location: string): void;
  exportBinary(): Uint8Array;
  verify(rootKey: Uint8Array, check: (condition: string) => string | null | undefined): void;
}
interface PeerLib {
  newMacaroon(opts: { version: 2; rootKey: Uint8Array; identifier: Uint8Array | string; location?: string }): PeerMacaroon;
  importMacaroon(bytes: Uint8Array | string): PeerMacaroon;
}
const peer = createRequire(import.meta.url)("macaroon") as PeerLib;

const SECRET_A = "l402-secret-A-0123456789abcdef";
const SECRET_B = "l402-secret-B-0123456789abcdef";
const SERVICE = "tollbooth";
const CALLER = "auth:0123456789abcdef0123456789abcdef";
const NOW_S = 1_800_000_000;
const NOW = NOW_S * 1000;
const VALID_UNTIL = NOW_S + 3600;
const CREDITS = 100;

let ringA: Keyring;
let ringB: Keyring;
let ringBA: Keyring;

beforeAll(async () => {
  ringA = await importKeyring(SECRET_A);
  ringB = await importKeyring(SECRET_B);
  ringBA = await importKeyring(`${SECRET_B},${SECRET_A}`);
});

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const sha256hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** canonical() as documented in shared/wire/encoding.ts, written out independently. */
const canon = (fields: string[]) => fields.map((f) => `${Buffer.byteLength(f, "utf8")}:${f}`).join("");
/** The documented root key: HMAC-SHA256(secret, canonical(["tollbooth/l402-root/v1", hex(identifier)])). */
const rootKeyOf = (secret: string, identifier: Uint8Array) =>
  new Uint8Array(
    createHmac("sha256", secret)
      .update(canon(["tollbooth/l402-root/v1", hex(identifier)]))
      .digest(),
  );
/** The documented caller tag: base64url of the first 16 bytes of SHA-256(caller). */
const tagOf = (caller: string) => createHash("sha256").update(caller).digest().subarray(0, 16).toString("base64url");

/** A paid invoice: preimage and payment hash. */
function invoice() {
  const preimage = new Uint8Array(randomBytes(32));
  return { preimage, preimageHex: hex(preimage), paymentHash: sha256hex(preimage) };
}

/** A macaroon read through the peer's getters (its export breaks past 3 caveats; see macaroon.test.ts). */
function fromPeer(m: PeerMacaroon): Macaroon {
  return {
    location: m.location ?? "",
    identifier: new Uint8Array(m.identifier),
    caveats: m.caveats.map((c) => new Uint8Array(c.identifier)),
    signature: new Uint8Array(m.signature),
  };
}

/** Mint with the peer under the documented root key of `secret` (any identifier, any caveats). */
function peerMint(secret: string, identifier: Uint8Array, caveats: (string | Uint8Array)[], location = "tollbooth"): Macaroon {
  const m = peer.newMacaroon({ version: 2, rootKey: rootKeyOf(secret, identifier), identifier, location });
  for (const c of caveats) m.addFirstPartyCaveat(c);
  return fromPeer(m);
}

const identifierOf = (paymentHash: string, tokenId = hex(new Uint8Array(randomBytes(32)))) =>
  new Uint8Array([0, 0, ...Buffer.from(paymentHash, "hex"), ...Buffer.from(tokenId, "hex")]);
const standardCaveats = (over: { service?: string; validUntil?: number; credits?: number; caller?: string } = {}) => {
  const s = over.service ?? SERVICE;
  return [
    `services=${s}:0`,
    `${s}_valid_until=${over.validUntil ?? VALID_UNTIL}`,
    `${s}_credits=${over.credits ?? CREDITS}`,
    `${s}_caller=${tagOf(over.caller ?? CALLER)}`,
  ];
};

async function mint(ring = ringA, over: Partial<Parameters<typeof mintL402>[1]> = {}) {
  const inv = invoice();
  const minted = await mintL402(ring, {
    paymentHash: inv.paymentHash,
    service: SERVICE,
    validUntil: VALID_UNTIL,
    credits: CREDITS,
    caller: CALLER,
    ...over,
  });
  const decoded = decodeMacaroon(Buffer.from(minted.macaroon, "base64"));
  if (!decoded.ok) throw new Error(decoded.reason);
  return { ...inv, ...minted, m: decoded.macaroon };
}

const ctx = (over: Partial<{ service: string; caller: string; nowMs: number }> = {}) => ({
  service: SERVICE,
  caller: CALLER,
  nowMs: NOW,
  ...over,
});
const verify = (m: Macaroon, preimage: Uint8Array, over: Parameters<typeof ctx>[0] = {}, ring = ringA) =>
  verifyL402(ring, { macaroon: m, preimage }, ctx(over));

describe("mintL402", () => {
  it("mints a V2 macaroon the peer verifies under the documented root key, with the documented identifier and caveats in order", async () => {
    const { m, macaroon, tokenId, paymentHash } = await mint();
    expect(macaroon).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(macaroon.length % 4).toBe(0);
    const theirs = peer.importMacaroon(Buffer.from(macaroon, "base64"));
    expect(theirs.location).toBe("tollbooth");
    const id = new Uint8Array(theirs.identifier);
    expect(id).toHaveLength(66);
    expect([id[0], id[1]]).toEqual([0, 0]);
    expect(hex(id.subarray(2, 34))).toBe(paymentHash);
    expect(hex(id.subarray(34))).toBe(tokenId);
    expect(tokenId).toMatch(/^[0-9a-f]{64}$/);
    const seen: string[] = [];
    theirs.verify(rootKeyOf(SECRET_A, id), (c) => void seen.push(c));
    expect(seen).toEqual(standardCaveats());
    expect(() => theirs.verify(rootKeyOf(SECRET_B, id), () => null)).toThrow();
    expect(await l402RootKey(ringA.signer, m.identifier)).toEqual(rootKeyOf(SECRET_A, id));
  });

  it("draws a fresh token id each time", async () => {
    const a = await mint();
    const b = await mintL402(ringA, {
      paymentHash: a.paymentHash,
      service: SERVICE,
      validUntil: VALID_UNTIL,
      credits: CREDITS,
      caller: CALLER,
    });
    expect(b.tokenId).not.toBe(a.tokenId);
  });

  it("throws TypeError for a bad payment hash, service, expiry or credits", async () => {
    const ok = { paymentHash: "ab".repeat(32), service: SERVICE, validUntil: VALID_UNTIL, credits: 1, caller: CALLER };
    for (const bad of [
      { paymentHash: "ab".repeat(31) },
      { paymentHash: "AB".repeat(32) },
      { service: "" },
      { service: "a=b" },
      { service: "a,b" },
      { service: "a:b" },
      { validUntil: 1.5 },
      { validUntil: -1 },
      { credits: 0 },
      { credits: 2.5 },
    ]) {
      await expect(mintL402(ringA, { ...ok, ...bad }), JSON.stringify(bad)).rejects.toThrow(TypeError);
    }
  });
});

describe("identifier and caller tag", () => {
  it("encodeIdentifier / decodeIdentifier: uint16 BE 0 ‖ payment hash ‖ token id, round trip", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (ph, tid) => {
        const id = encodeIdentifier({ paymentHash: hex(ph), tokenId: hex(tid) });
        expect(id).toEqual(new Uint8Array([0, 0, ...ph, ...tid]));
        expect(decodeIdentifier(id)).toEqual({ ok: true, paymentHash: hex(ph), tokenId: hex(tid) });
      }),
    );
  });

  it("decodeIdentifier refuses another length or version", () => {
    const id = identifierOf("cd".repeat(32));
    expect(decodeIdentifier(id.subarray(0, 65))).toEqual({ ok: false, reason: "malformed" });
    expect(decodeIdentifier(new Uint8Array([...id, 0]))).toEqual({ ok: false, reason: "malformed" });
    for (const v of [
      [0, 1],
      [1, 0],
    ])
      expect(decodeIdentifier(new Uint8Array([...v, ...id.subarray(2)]))).toEqual({ ok: false, reason: "malformed" });
  });

  it("callerTag is base64url of the first 16 bytes of SHA-256(UTF-8 caller), 22 characters", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string(), async (caller) => {
        const tag = await callerTag(caller);
        expect(tag).toBe(tagOf(caller));
        expect(tag).toMatch(/^[A-Za-z0-9_-]{22}$/);
      }),
      { numRuns: 50 },
    );
  });
});

describe("formatL402Challenge", () => {
  it("writes L402 version, token and macaroon (the same), and invoice, as quoted auth-params", async () => {
    const { macaroon } = await mint();
    const header = formatL402Challenge({ macaroon, invoice: "lnbcrt100n1pexample" });
    expect(header.startsWith('L402 version="0", token="')).toBe(true);
    expect(parseAuthParams(header)).toEqual({
      scheme: "L402",
      params: { version: "0", token: macaroon, macaroon, invoice: "lnbcrt100n1pexample" },
    });
  });
});

describe("readL402Credential / parseL402Authorization", () => {
  it("reads <standard base64 macaroon>:<hex preimage> and the base64url spelling of the same macaroon", async () => {
    const { macaroon, preimage, preimageHex, m } = await mint();
    for (const mac of [macaroon, Buffer.from(macaroon, "base64").toString("base64url")]) {
      expect(readL402Credential(`${mac}:${preimageHex}`)).toEqual({ ok: true, macaroon: m, preimage });
    }
  });

  it("refuses other shapes as malformed", async () => {
    const { macaroon, preimageHex } = await mint();
    const other = (await mint()).macaroon;
    for (const bad of [
      `${macaroon},${other}:${preimageHex}`,
      `${macaroon}:${preimageHex.toUpperCase()}`,
      `${macaroon}:${preimageHex.slice(2)}`,
      `${macaroon}:${preimageHex}00`,
      `${macaroon}${preimageHex}`,
      `${macaroon}:${preimageHex}:${preimageHex}`,
      `:${preimageHex}`,
      ` ${macaroon}:${preimageHex}`,
      `${macaroon}:${preimageHex} `,
      `${macaroon.slice(0, -8)}:${preimageHex}`,
      `${macaroon.replace(/=+$/, "")}AB:${preimageHex}`,
      `${toBase64(new TextEncoder().encode("not a macaroon"))}:${preimageHex}`,
      `${"A".repeat(8200)}:${preimageHex}`,
    ]) {
      expect(readL402Credential(bad), bad.slice(0, 40)).toEqual({ ok: false, reason: "malformed" });
    }
  });

  it("refuses a macaroon with a third-party caveat as unknown_caveat", async () => {
    const { paymentHash, preimageHex } = invoice();
    const id = identifierOf(paymentHash);
    const m = peer.newMacaroon({ version: 2, rootKey: rootKeyOf(SECRET_A, id), identifier: id, location: "tollbooth" });
    m.addFirstPartyCaveat(standardCaveats()[0]!);
    m.addThirdPartyCaveat(new Uint8Array(randomBytes(32)), "is-human", "https://auth.example");
    const mac = Buffer.from(m.exportBinary()).toString("base64");
    expect(readL402Credential(`${mac}:${preimageHex}`)).toEqual({ ok: false, reason: "unknown_caveat" });
  });

  it("parses Authorization for L402 and LSAT in any case, and returns null for other schemes", async () => {
    const { macaroon, preimageHex, m, preimage } = await mint();
    const cred = `${macaroon}:${preimageHex}`;
    expect(L402_SCHEMES).toEqual(["L402", "LSAT"]);
    for (const scheme of ["L402", "LSAT", "l402", "lsat", "Lsat"]) {
      expect(parseL402Authorization(`${scheme} ${cred}`)).toEqual({ ok: true, macaroon: m, preimage });
    }
    for (const other of ["Bearer x", "Basic dXNlcjpwYXNz", `L402x ${cred}`, `Bearer ${cred}`, "", " L402 x", `L4020 ${cred}`]) {
      expect(parseL402Authorization(other), other.slice(0, 20)).toBeNull();
    }
    for (const bad of ["L402", "LSAT ", `L402  ${cred}`, `L402\t${cred}`, "L402 garbage", `L402 token="${macaroon}"`]) {
      expect(parseL402Authorization(bad), bad.slice(0, 20)).toEqual({ ok: false, reason: "malformed" });
    }
  });
});

describe("verifyL402", () => {
  it("accepts a paid credential and grants its credits until its expiry", async () => {
    const { m, preimage, paymentHash, tokenId } = await mint();
    expect(await verify(m, preimage)).toEqual({ ok: true, paymentHash, tokenId, credits: CREDITS, validUntilMs: VALID_UNTIL * 1000 });
    expect((await verify(m, preimage, { nowMs: VALID_UNTIL * 1000 - 1 })).ok).toBe(true);
  });

  it("accepts one minted by the peer with the documented root key, identifier and caveats", async () => {
    const { paymentHash, preimage } = invoice();
    const tokenId = "ef".repeat(32);
    const m = peerMint(SECRET_A, identifierOf(paymentHash, tokenId), standardCaveats({ credits: 7 }));
    expect(await verify(m, preimage)).toEqual({ ok: true, paymentHash, tokenId, credits: 7, validUntilMs: VALID_UNTIL * 1000 });
  });

  it("secret rotation: any key of the keyring verifies; a keyring without the minting secret refuses", async () => {
    const { m, preimage } = await mint(ringA);
    expect((await verify(m, preimage, {}, ringBA)).ok).toBe(true);
    expect(await verify(m, preimage, {}, ringB)).toEqual({ ok: false, reason: "bad_signature" });
  });

  describe("attenuation", () => {
    it("a caveat added by the holder with the peer narrows credits and expiry", async () => {
      const { macaroon, preimage } = await mint();
      const theirs = peer.importMacaroon(macaroon);
      theirs.addFirstPartyCaveat(`${SERVICE}_credits=5`);
      theirs.addFirstPartyCaveat(`${SERVICE}_valid_until=${NOW_S + 60}`);
      theirs.addFirstPartyCaveat(`services=other:1,${SERVICE}:0`);
      theirs.addFirstPartyCaveat(`${SERVICE}_caller=${tagOf(CALLER)}`);
      const grant = await verify(fromPeer(theirs), preimage);
      expect(grant).toMatchObject({ ok: true, credits: 5, validUntilMs: (NOW_S + 60) * 1000 });
      expect(await verify(fromPeer(theirs), preimage, { nowMs: (NOW_S + 60) * 1000 })).toEqual({ ok: false, reason: "expired" });
    });

    it("a caveat cannot widen: more credits or a later expiry leave the minted ones in force", async () => {
      const { m, preimage } = await mint();
      const wider = await addCaveat(await addCaveat(m, `${SERVICE}_credits=1000000`), `${SERVICE}_valid_until=${VALID_UNTIL + 10_000}`);
      expect(await verify(wider, preimage)).toMatchObject({ ok: true, credits: CREDITS, validUntilMs: VALID_UNTIL * 1000 });
      expect(await verify(wider, preimage, { nowMs: VALID_UNTIL * 1000 })).toEqual({ ok: false, reason: "expired" });
    });
  });

  describe("each refusal", () => {
    it("malformed: identifier of another length or version, another location", async () => {
      const { paymentHash, preimage } = invoice();
      const id = identifierOf(paymentHash);
      const cases: Macaroon[] = [
        peerMint(SECRET_A, id.subarray(0, 65), standardCaveats()),
        peerMint(SECRET_A, new Uint8Array([...id, 0]), standardCaveats()),
        peerMint(SECRET_A, new Uint8Array([0, 1, ...id.subarray(2)]), standardCaveats()),
        peerMint(SECRET_A, id, standardCaveats(), "elsewhere"),
        peerMint(SECRET_A, id, standardCaveats(), ""),
      ];
      for (const m of cases) expect(await verify(m, preimage)).toEqual({ ok: false, reason: "malformed" });
    });

    it("malformed: missing credits or valid_until caveat, credits < 1, integers not plain decimal, a bad services list", async () => {
      const { paymentHash, preimage } = invoice();
      const [services, validUntil, credits, caller] = standardCaveats();
      const lists: string[][] = [
        [services!, validUntil!, caller!],
        [services!, credits!, caller!],
        [services!, validUntil!, `${SERVICE}_credits=0`, caller!],
        [services!, validUntil!, `${SERVICE}_credits=0100`],
        [services!, validUntil!, `${SERVICE}_credits=+100`],
        [services!, validUntil!, `${SERVICE}_credits=1e2`],
        [services!, validUntil!, `${SERVICE}_credits=100.0`],
        [services!, validUntil!, `${SERVICE}_credits=`],
        [services!, validUntil!, `${SERVICE}_credits=99999999999999999999`],
        [services!, `${SERVICE}_valid_until=0${VALID_UNTIL}`, credits!],
        [services!, `${SERVICE}_valid_until=${VALID_UNTIL} `, credits!],
        [`services=${SERVICE}`, validUntil!, credits!],
        [`services=${SERVICE}:x`, validUntil!, credits!],
        [`services=`, validUntil!, credits!],
        [`services=${SERVICE}:0,`, validUntil!, credits!],
      ];
      for (const caveats of lists) {
        expect(await verify(peerMint(SECRET_A, identifierOf(paymentHash), caveats), preimage), caveats.join(" ")).toEqual({
          ok: false,
          reason: "malformed",
        });
      }
    });

    it("bad_signature: tampered caveat, removed caveat, changed identifier, another gateway's secret", async () => {
      const { m, preimage, paymentHash } = await mint();
      const enc = new TextEncoder();
      const flippedTokenId = Uint8Array.from(m.identifier, (b, i) => (i === 50 ? b ^ 0xff : b));
      const cases: Macaroon[] = [
        { ...m, caveats: m.caveats.map((c, i) => (i === 2 ? enc.encode(`${SERVICE}_credits=1000000`) : c)) },
        { ...m, caveats: m.caveats.filter((_, i) => i !== 1) },
        { ...m, caveats: m.caveats.slice(0, 3) },
        { ...m, identifier: flippedTokenId },
        peerMint(SECRET_B, identifierOf(paymentHash), standardCaveats()),
      ];
      for (const c of cases) expect(await verify(c, preimage)).toEqual({ ok: false, reason: "bad_signature" });
    });

    it("wrong_preimage: a preimage of another payment", async () => {
      const { m } = await mint();
      expect(await verify(m, invoice().preimage)).toEqual({ ok: false, reason: "wrong_preimage" });
    });

    it("wrong_service: a services caveat (the holder's) without this service", async () => {
      const { m, preimage } = await mint();
      expect(await verify(await addCaveat(m, "services=other:0"), preimage)).toEqual({ ok: false, reason: "wrong_service" });
      expect(await verify(await addCaveat(m, "services=other:0,tollbooth2:0"), preimage)).toEqual({ ok: false, reason: "wrong_service" });
      const { paymentHash, preimage: p2 } = invoice();
      const minted = peerMint(SECRET_A, identifierOf(paymentHash), ["services=other:0", ...standardCaveats().slice(1)]);
      expect(await verify(minted, p2)).toEqual({ ok: false, reason: "wrong_service" });
    });

    it("wrong_service before unknown_caveat: a macaroon for another service name (its other caveat keys are foreign too)", async () => {
      const { m, preimage } = await mint(ringA, { service: "weather" });
      expect(await verify(m, preimage)).toEqual({ ok: false, reason: "wrong_service" });
      expect((await verify(m, preimage, { service: "weather" })).ok).toBe(true);
    });

    it("wrong_caller: presented by another caller, or narrowed to another caller", async () => {
      const { m, preimage } = await mint();
      expect(await verify(m, preimage, { caller: "ip:203.0.113.7" })).toEqual({ ok: false, reason: "wrong_caller" });
      expect(await verify(await addCaveat(m, `${SERVICE}_caller=${tagOf("someone-else")}`), preimage)).toEqual({
        ok: false,
        reason: "wrong_caller",
      });
    });

    it("expired: at and after valid_until, including one the holder added", async () => {
      const { m, preimage } = await mint();
      expect(await verify(m, preimage, { nowMs: VALID_UNTIL * 1000 })).toEqual({ ok: false, reason: "expired" });
      expect(await verify(m, preimage, { nowMs: VALID_UNTIL * 1000 + 86_400_000 })).toEqual({ ok: false, reason: "expired" });
      expect(await verify(await addCaveat(m, `${SERVICE}_valid_until=${NOW_S}`), preimage)).toEqual({ ok: false, reason: "expired" });
    });

    it("unknown_caveat: any caveat outside the four, not key=value, or not UTF-8", async () => {
      const { m, preimage } = await mint();
      for (const extra of [
        "foo=bar",
        `${SERVICE}_capabilities=read`,
        "other_credits=5",
        "noequals",
        "",
        "=x",
        "Services=tollbooth:0",
        `${SERVICE}_credits`,
      ]) {
        expect(await verify(await addCaveat(m, extra), preimage), extra).toEqual({ ok: false, reason: "unknown_caveat" });
      }
      const theirs = peer.importMacaroon(encodeMacaroon(m));
      theirs.addFirstPartyCaveat(new Uint8Array([0xff, 0x3d, 0x31]));
      expect(await verify(fromPeer(theirs), preimage)).toEqual({ ok: false, reason: "unknown_caveat" });
    });
  });

  describe("properties", () => {
    it("any single byte change of the encoded macaroon is refused", async () => {
      const { m, preimage, preimageHex } = await mint();
      const encoded = encodeMacaroon(m);
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: encoded.length - 1 }), fc.integer({ min: 1, max: 255 }), async (at, mask) => {
          const changed = Uint8Array.from(encoded, (b, i) => (i === at ? b ^ mask : b));
          const read = readL402Credential(`${toBase64(changed)}:${preimageHex}`);
          if (read.ok) expect((await verifyL402(ringA, read, ctx())).ok).toBe(false);
        }),
        { numRuns: 500 },
      );
      // Every position, one bit each, deterministically as well.
      for (let at = 0; at < encoded.length; at++) {
        for (const mask of [0x01, 0x80]) {
          const changed = Uint8Array.from(encoded, (b, i) => (i === at ? b ^ mask : b));
          const read = readL402Credential(`${toBase64(changed)}:${preimageHex}`);
          if (read.ok) expect((await verifyL402(ringA, read, ctx())).ok, `byte ${at} ^ ${mask}`).toBe(false);
        }
      }
      expect((await verify(m, preimage)).ok).toBe(true);
    });

    it("any other preimage is refused", async () => {
      const { m, preimage } = await mint();
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), async (other) => {
          fc.pre(hex(other) !== hex(preimage));
          const cred: L402Credential = { macaroon: m, preimage: other };
          expect(await verifyL402(ringA, cred, ctx())).toEqual({ ok: false, reason: "wrong_preimage" });
        }),
        { numRuns: 200 },
      );
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 1, max: 255 }), async (at, mask) => {
          const other = Uint8Array.from(preimage, (b, i) => (i === at ? b ^ mask : b));
          expect(await verifyL402(ringA, { macaroon: m, preimage: other }, ctx())).toEqual({ ok: false, reason: "wrong_preimage" });
        }),
        { numRuns: 200 },
      );
    });
  });
});
