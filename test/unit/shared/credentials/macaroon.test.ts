/**
 * shared/credentials/macaroon.ts against the npm `macaroon` package (3.x, the JavaScript
 * implementation of libmacaroons' V2 format) as the interop peer, and against the signature
 * chain written out independently with node:crypto.
 */
import { createHmac, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addCaveat,
  decodeMacaroon,
  encodeMacaroon,
  fromBase64,
  MACAROON_MAX_BYTES,
  MACAROON_MAX_CAVEATS,
  type Macaroon,
  mintMacaroon,
  toBase64,
  verifyMacaroonSignature,
} from "../../../../shared/credentials/macaroon.ts";

/** The part of npm `macaroon`'s API these tests use (the package ships no types). */
interface PeerMacaroon {
  readonly location: string;
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
/**
 * npm `macaroon` 3.0.4's `exportBinary` doubles its buffer on every append (`ByteBuffer._grow`
 * compares with an undefined `_capacity`), so it runs out of memory past 3 caveats. Its
 * export is used here only for macaroons with at most 3 caveats; larger ones are compared
 * through its getters, and its import (which has no such bug) is used for any size.
 */
const PEER_EXPORT_MAX_CAVEATS = 3;

const bytes = (n: number) => new Uint8Array(randomBytes(n));
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const CAVEATS = ["services=svc:0", "svc_valid_until=1800000000", "svc_credits=100"];

/** Verify with the peer; returns the conditions its check saw, or throws as the peer does. */
function peerVerify(m: PeerMacaroon, rootKey: Uint8Array): string[] {
  const seen: string[] = [];
  m.verify(rootKey, (cond) => {
    seen.push(cond);
    return null;
  });
  return seen;
}

/** The libmacaroons chain, written out with node:crypto. */
function chain(rootKey: Uint8Array, identifier: Uint8Array, caveats: Uint8Array[]): Uint8Array {
  let sig = createHmac("sha256", "macaroons-key-generator").update(rootKey).digest();
  sig = createHmac("sha256", sig).update(identifier).digest();
  for (const c of caveats) sig = createHmac("sha256", sig).update(c).digest();
  return new Uint8Array(sig);
}

/** A structurally valid macaroon built by hand (for decoder tests; signature not meaningful). */
function raw(parts: number[][]): Uint8Array {
  return new Uint8Array(parts.flat());
}
const field = (type: number, data: number[] | Uint8Array) => [type, data.length, ...data];
const SIG = Array.from({ length: 32 }, (_, i) => i);

describe("interop with npm macaroon (V2 binary)", () => {
  it("a macaroon minted here is accepted by the peer, which sees our caveats, and re-exports the same bytes", async () => {
    const rootKey = bytes(32);
    const identifier = bytes(66);
    const ours = await mintMacaroon(rootKey, identifier, CAVEATS, "tollbooth");
    const encoded = encodeMacaroon(ours);
    const theirs = peer.importMacaroon(encoded);
    expect(theirs.location).toBe("tollbooth");
    expect(new Uint8Array(theirs.identifier)).toEqual(identifier);
    expect(peerVerify(theirs, rootKey)).toEqual(CAVEATS);
    expect(new Uint8Array(theirs.exportBinary())).toEqual(encoded);
  });

  it("the peer's check refusing a caveat of ours fails its verification (caveats reach its checker)", async () => {
    const rootKey = bytes(32);
    const theirs = peer.importMacaroon(encodeMacaroon(await mintMacaroon(rootKey, bytes(66), CAVEATS, "tollbooth")));
    expect(() => theirs.verify(rootKey, (cond) => (cond.startsWith("svc_credits=") ? "no" : null))).toThrow(/caveat check failed/);
  });

  it("a macaroon minted by the peer decodes here, verifies here, and re-encodes to the same bytes", async () => {
    const rootKey = bytes(32);
    const identifier = bytes(66);
    const theirs = peer.newMacaroon({ version: 2, rootKey, identifier, location: "elsewhere" });
    for (const c of CAVEATS) theirs.addFirstPartyCaveat(c);
    const encoded = new Uint8Array(theirs.exportBinary());
    const decoded = decodeMacaroon(encoded);
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.macaroon.location).toBe("elsewhere");
    expect(decoded.macaroon.identifier).toEqual(identifier);
    expect(decoded.macaroon.caveats.map(text)).toEqual(CAVEATS);
    expect(decoded.macaroon.signature).toEqual(new Uint8Array(theirs.signature));
    expect(await verifyMacaroonSignature(rootKey, decoded.macaroon)).toBe(true);
    expect(await verifyMacaroonSignature(bytes(32), decoded.macaroon)).toBe(false);
    expect(encodeMacaroon(decoded.macaroon)).toEqual(encoded);
  });

  it("a macaroon without location encodes as the peer's does (no location field)", async () => {
    const rootKey = bytes(16);
    const identifier = bytes(10);
    const theirs = peer.newMacaroon({ version: 2, rootKey, identifier });
    theirs.addFirstPartyCaveat("a=b");
    const ours = await mintMacaroon(rootKey, identifier, ["a=b"], "");
    expect(encodeMacaroon(ours)).toEqual(new Uint8Array(theirs.exportBinary()));
    expect(encodeMacaroon(ours)[1]).toBe(2); // first field is the identifier
  });

  it("attenuation: a caveat the holder adds with the peer verifies here, and one added here verifies with the peer", async () => {
    const rootKey = bytes(32);
    const ours = await mintMacaroon(rootKey, bytes(66), CAVEATS.slice(0, 2), "tollbooth");
    const theirs = peer.importMacaroon(encodeMacaroon(ours));
    theirs.addFirstPartyCaveat("svc_credits=5");
    const back = decodeMacaroon(new Uint8Array(theirs.exportBinary()));
    if (!back.ok) throw new Error(back.reason);
    expect(back.macaroon.caveats.map(text)).toEqual([...CAVEATS.slice(0, 2), "svc_credits=5"]);
    expect(await verifyMacaroonSignature(rootKey, back.macaroon)).toBe(true);

    const minted = peer.newMacaroon({ version: 2, rootKey, identifier: bytes(66), location: "tollbooth" });
    minted.addFirstPartyCaveat(CAVEATS[0]!);
    const decoded = decodeMacaroon(new Uint8Array(minted.exportBinary()));
    if (!decoded.ok) throw new Error(decoded.reason);
    const narrowed = await addCaveat(decoded.macaroon, "svc_valid_until=1");
    expect(peerVerify(peer.importMacaroon(encodeMacaroon(narrowed)), rootKey)).toEqual([CAVEATS[0], "svc_valid_until=1"]);
    // addCaveat does not change its argument.
    expect(decoded.macaroon.caveats).toHaveLength(1);
    expect(await verifyMacaroonSignature(rootKey, decoded.macaroon)).toBe(true);
  });

  it("the peer refuses a macaroon of ours whose caveat was tampered with", async () => {
    const rootKey = bytes(32);
    const m = await mintMacaroon(rootKey, bytes(66), CAVEATS, "tollbooth");
    const tampered: Macaroon = { ...m, caveats: [m.caveats[0]!, new TextEncoder().encode("svc_valid_until=1900000000"), m.caveats[2]!] };
    expect(() => peerVerify(peer.importMacaroon(encodeMacaroon(tampered)), rootKey)).toThrow(/signature mismatch/);
  });
});

describe("signature chain", () => {
  it("is HMAC-SHA256 keyed by HMAC('macaroons-key-generator', rootKey), over the identifier then each caveat", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.array(fc.string({ maxLength: 40 }), { maxLength: 6 }),
        async (rootKey, identifier, caveats) => {
          const m = await mintMacaroon(rootKey, identifier, caveats, "x");
          const enc = new TextEncoder();
          expect(m.signature).toEqual(
            chain(
              rootKey,
              identifier,
              caveats.map((c) => enc.encode(c)),
            ),
          );
          expect(await verifyMacaroonSignature(rootKey, m)).toBe(true);
        },
      ),
      { numRuns: 50 },
    );
  });

  it("refuses a tampered caveat, a removed caveat, reordered caveats, a changed identifier, a wrong root key, a caveat appended without re-signing", async () => {
    const rootKey = bytes(32);
    const m = await mintMacaroon(rootKey, bytes(66), CAVEATS, "tollbooth");
    expect(await verifyMacaroonSignature(rootKey, m)).toBe(true);
    const enc = new TextEncoder();
    const variants: Macaroon[] = [
      { ...m, caveats: [m.caveats[0]!, m.caveats[1]!, enc.encode("svc_credits=1000")] },
      { ...m, caveats: m.caveats.slice(0, 2) },
      { ...m, caveats: m.caveats.slice(1) },
      { ...m, caveats: [m.caveats[1]!, m.caveats[0]!, m.caveats[2]!] },
      { ...m, identifier: Uint8Array.from(m.identifier, (b, i) => (i === 40 ? b ^ 1 : b)) },
      { ...m, caveats: [...m.caveats, enc.encode("svc_credits=1")] },
      { ...m, signature: Uint8Array.from(m.signature, (b, i) => (i === 0 ? b ^ 0x80 : b)) },
    ];
    for (const v of variants) expect(await verifyMacaroonSignature(rootKey, v)).toBe(false);
    expect(await verifyMacaroonSignature(bytes(32), m)).toBe(false);
  });

  it("throws TypeError for an empty root key", async () => {
    await expect(mintMacaroon(new Uint8Array(0), bytes(4), [], "")).rejects.toThrow(TypeError);
  });
});

describe("decodeMacaroon", () => {
  const arbMacaroon = fc.record({
    location: fc.string({ maxLength: 30 }),
    identifier: fc.uint8Array({ maxLength: 200 }),
    caveats: fc.array(fc.uint8Array({ maxLength: 150 }), { maxLength: 12 }),
    signature: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  });

  it("round-trips encode → decode, and the peer reads and re-exports the same bytes", () => {
    fc.assert(
      fc.property(arbMacaroon, (m) => {
        const encoded = encodeMacaroon(m);
        const decoded = decodeMacaroon(encoded);
        expect(decoded).toEqual({ ok: true, macaroon: m });
        const theirs = peer.importMacaroon(encoded);
        if (m.caveats.length <= PEER_EXPORT_MAX_CAVEATS) expect(new Uint8Array(theirs.exportBinary())).toEqual(encoded);
        expect(theirs.location ?? "").toBe(m.location); // the peer reports an absent location as null
        expect(new Uint8Array(theirs.identifier)).toEqual(m.identifier);
        expect(new Uint8Array(theirs.signature)).toEqual(m.signature);
        expect(theirs.caveats.map((c) => new Uint8Array(c.identifier))).toEqual(m.caveats);
      }),
      { numRuns: 200 },
    );
  });

  it("refuses every strict prefix and any trailing byte", () => {
    fc.assert(
      fc.property(arbMacaroon, fc.integer({ min: 0, max: 255 }), (m, extra) => {
        const encoded = encodeMacaroon(m);
        for (let n = 0; n < encoded.length; n++) expect(decodeMacaroon(encoded.subarray(0, n)).ok).toBe(false);
        expect(decodeMacaroon(new Uint8Array([...encoded, extra]))).toEqual({ ok: false, reason: "malformed" });
      }),
      { numRuns: 50 },
    );
  });

  it("accepts the hand-built minimal form and refuses each deviation from the field order", () => {
    const id = [9, 9, 9];
    const ok = raw([[2], field(1, [0x61]), field(2, id), [0], field(2, [0x63]), [0], [0], field(6, SIG)]);
    expect(decodeMacaroon(ok).ok).toBe(true);
    const malformed: Record<string, Uint8Array> = {
      "version 1": raw([[1], field(2, id), [0], [0], field(6, SIG)]),
      "no identifier": raw([[2], [0], [0], field(6, SIG)]),
      "duplicate location": raw([[2], field(1, [0x61]), field(1, [0x61]), field(2, id), [0], [0], field(6, SIG)]),
      "duplicate identifier": raw([[2], field(2, id), field(2, id), [0], [0], field(6, SIG)]),
      "unknown field type 3": raw([[2], field(2, id), field(3, [1]), [0], [0], field(6, SIG)]),
      "unknown field type in caveat": raw([[2], field(2, id), [0], field(2, [0x63]), field(5, [1]), [0], [0], field(6, SIG)]),
      "duplicate caveat identifier": raw([[2], field(2, id), [0], field(2, [0x63]), field(2, [0x63]), [0], [0], field(6, SIG)]),
      "missing signature": raw([[2], field(2, id), [0], [0]]),
      "duplicate signature": raw([[2], field(2, id), [0], [0], field(6, SIG), field(6, SIG)]),
      "signature of 31 bytes": raw([[2], field(2, id), [0], [0], field(6, SIG.slice(1))]),
      "signature of 33 bytes": raw([[2], field(2, id), [0], [0], field(6, [...SIG, 0])]),
      "empty location field": raw([[2], field(1, []), field(2, id), [0], [0], field(6, SIG)]),
      "location not UTF-8": raw([[2], field(1, [0xff]), field(2, id), [0], [0], field(6, SIG)]),
      "caveat location without vid": raw([[2], field(2, id), [0], field(1, [0x61]), field(2, [0x63]), [0], [0], field(6, SIG)]),
      "non-minimal varint": raw([[2], [2, 0x83, 0x00], id, [0], [0], field(6, SIG)]),
      "length past the end": raw([[2], [2, 0x7f], id]),
      empty: new Uint8Array(0),
    };
    for (const [name, b] of Object.entries(malformed)) expect(decodeMacaroon(b), name).toEqual({ ok: false, reason: "malformed" });
  });

  it("refuses a third-party caveat (as the peer writes one)", () => {
    const rootKey = bytes(32);
    const m = peer.newMacaroon({ version: 2, rootKey, identifier: "id", location: "here" });
    m.addFirstPartyCaveat("a=b");
    m.addThirdPartyCaveat(bytes(32), "third", "https://auth.example");
    expect(decodeMacaroon(new Uint8Array(m.exportBinary()))).toEqual({ ok: false, reason: "third_party_caveat" });
  });

  it(`bounds: ${MACAROON_MAX_CAVEATS} caveats pass, one more is refused; more than ${MACAROON_MAX_BYTES} bytes are refused`, async () => {
    const rootKey = bytes(32);
    const many = Array.from({ length: MACAROON_MAX_CAVEATS }, (_, i) => `c${i}=1`);
    const max = await mintMacaroon(rootKey, bytes(66), many, "tollbooth");
    expect(decodeMacaroon(encodeMacaroon(max)).ok).toBe(true);
    const over = await addCaveat(max, "one=more");
    expect(decodeMacaroon(encodeMacaroon(over))).toEqual({ ok: false, reason: "malformed" });
    const big = await mintMacaroon(rootKey, new Uint8Array(MACAROON_MAX_BYTES), [], "");
    expect(decodeMacaroon(encodeMacaroon(big))).toEqual({ ok: false, reason: "malformed" });
    // Just under the limit still decodes.
    const fits = { ...big, identifier: new Uint8Array(MACAROON_MAX_BYTES - 1 - 3 - 1 - 1 - 2 - 32) };
    expect(encodeMacaroon(fits).length).toBe(MACAROON_MAX_BYTES);
    expect(decodeMacaroon(encodeMacaroon(fits)).ok).toBe(true);
  });
});

describe("base64", () => {
  it("toBase64 is standard padded base64 (RFC 4648 §4), and fromBase64 reads it, base64url, and both unpadded", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const std = Buffer.from(b).toString("base64");
        expect(toBase64(b)).toBe(std);
        const url = Buffer.from(b).toString("base64url");
        for (const form of [std, std.replace(/=+$/, ""), url, url + "=".repeat(std.length - url.length)]) {
          expect(fromBase64(form)).toEqual(b);
        }
      }),
    );
  });

  it("refuses mixed alphabets, other characters, whitespace, wrong padding and non-zero trailing bits", () => {
    for (const bad of ["+_==", "ab-/", "AAAA AAAA", "AAAA\n", "AA*A", "AA=", "A===", "AAAA=", "AA=A", "AAA==", "A", "AB==", "AAB=", "AB"]) {
      expect(fromBase64(bad), bad).toBeNull();
    }
    expect(fromBase64("")).toEqual(new Uint8Array(0));
    expect(fromBase64("+/+/")).toEqual(new Uint8Array([0xfb, 0xff, 0xbf]));
    expect(fromBase64("-_-_")).toEqual(new Uint8Array([0xfb, 0xff, 0xbf]));
  });
});
