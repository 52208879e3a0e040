/**
 * `decodeBolt11` (shared/credentials/bolt11.ts) against invoices another implementation signed
 * (npm `bolt11`, as the Lightning stand-in issues them) and read by a third
 * (`light-bolt11-decoder`, which the Worker used before): the same network, amount, timestamp,
 * expiry and payment hash; an invoice changed in any way, or malformed, is refused.
 */
import { createHash, randomBytes } from "node:crypto";
import bolt11 from "bolt11";
import fc from "fast-check";
import { decode } from "light-bolt11-decoder";
import { describe, expect, it } from "vitest";
import { decodeBolt11 } from "../../../../shared/credentials/bolt11.ts";
import { REGTEST, STANDIN_NODE_KEY } from "../../../helpers/lightning-standin.ts";

const NETWORKS = {
  bc: { bech32: "bc", pubKeyHash: 0, scriptHash: 5, validWitnessVersions: [0] },
  tb: { bech32: "tb", pubKeyHash: 111, scriptHash: 196, validWitnessVersions: [0] },
  bcrt: REGTEST,
};

/** A signed invoice of `msat` (none: no amount) on `network`, with an expiry tag when `expiry` is given. */
function invoice(network: keyof typeof NETWORKS, msat: string | null, expiry?: number, timestamp = 1_700_000_000) {
  const paymentHash = createHash("sha256").update(randomBytes(32)).digest("hex");
  const encoded = bolt11.encode({
    network: NETWORKS[network],
    ...(msat !== null ? { millisatoshis: msat } : {}),
    timestamp,
    tags: [
      { tagName: "payment_hash", data: paymentHash },
      { tagName: "description", data: "tollbooth: 5 credits" },
      ...(expiry !== undefined ? [{ tagName: "expire_time", data: expiry }] : []),
      { tagName: "payment_secret", data: randomBytes(32).toString("hex") },
    ],
  });
  return { text: bolt11.sign(encoded, STANDIN_NODE_KEY).paymentRequest!, paymentHash };
}

/** What light-bolt11-decoder reads from `text`, in `decodeBolt11`'s shape. */
function reference(text: string) {
  const d = decode(text);
  const field = (name: string) => (d.sections.find((s) => s.name === name) as { value?: unknown } | undefined)?.value;
  const amount = field("amount") as string | undefined;
  return {
    network: (field("coin_network") as { bech32: string }).bech32,
    msat: amount === undefined ? null : BigInt(amount),
    timestamp: field("timestamp"),
    expirySeconds: d.expiry,
    paymentHash: field("payment_hash"),
  };
}

describe("decodeBolt11", () => {
  it("reads what light-bolt11-decoder reads, for every amount multiplier, network and expiry", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<keyof typeof NETWORKS>("bc", "tb", "bcrt"),
        fc.option(fc.bigInt({ min: 1n, max: 21_000_000n * 100_000_000_000n }), { nil: null }),
        fc.option(fc.integer({ min: 1, max: 2 ** 31 }), { nil: undefined }),
        fc.integer({ min: 0, max: 2 ** 35 - 1 }),
        (network, msat, expiry, timestamp) => {
          const { text, paymentHash } = invoice(network, msat === null ? null : String(msat), expiry, timestamp);
          const got = decodeBolt11(text);
          expect(got).toEqual(reference(text));
          expect(got).toEqual({ network, msat, timestamp, expirySeconds: expiry ?? 3600, paymentHash });
          expect(decodeBolt11(text.toUpperCase())).toEqual(got);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("reads the amount with its multiplier: 10 sats is lnbcrt100n…", () => {
    const { text } = invoice("bcrt", "10000");
    expect(text.startsWith("lnbcrt100n1")).toBe(true);
    expect(decodeBolt11(text).msat).toBe(10_000n);
  });

  it("refuses an invoice with any one character changed, cut, or mixed case (the checksum, the charset)", () => {
    const { text } = invoice("bcrt", "10000", 600);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: text.length - 1 }), fc.constantFrom(..."qpzry9x8gf2tvdw0s3jn54khce6mua7l1b"), (i, c) => {
        fc.pre(text[i] !== c);
        expect(() => decodeBolt11(text.slice(0, i) + c + text.slice(i + 1))).toThrow(TypeError);
      }),
      { numRuns: 200 },
    );
    expect(() => decodeBolt11(text.slice(0, -1))).toThrow(TypeError);
    expect(() => decodeBolt11(text.slice(0, 20))).toThrow(TypeError);
    expect(() => decodeBolt11(text[0]!.toUpperCase() + text.slice(1))).toThrow(/mixed case/);
    expect(() => decodeBolt11("")).toThrow(TypeError);
    expect(() => decodeBolt11("lnbcrt1")).toThrow(TypeError);
  });

  it("refuses, with its checksum right: no payment hash, two, an unknown network, a fraction of a millisatoshi, a field past the signature", () => {
    const { text, paymentHash } = invoice("bcrt", "10000", 600);
    const sep = text.lastIndexOf("1");
    const words = [...text.slice(sep + 1, -6)].map((c) => CHARSET.indexOf(c));
    const signature = words.slice(-104);
    const [timestamp, fields] = [words.slice(0, 7), words.slice(7, -104)];
    /** The tagged fields of `fields` as [tag, data] (the invoice's own). */
    const tagged: Array<[number, number[]]> = [];
    for (let i = 0; i < fields.length; ) {
      const len = fields[i + 1]! * 32 + fields[i + 2]!;
      tagged.push([fields[i]!, fields.slice(i + 3, i + 3 + len)]);
      i += 3 + len;
    }
    const field = ([tag, data]: [number, number[]]) => [tag, data.length >> 5, data.length & 31, ...data];
    const hash = tagged.find(([tag]) => tag === 1)!;
    const others = tagged.filter(([tag]) => tag !== 1);
    const build = (hrp: string, fs: Array<[number, number[]]>, tail: number[] = signature) =>
      encode(hrp, [...timestamp, ...fs.flatMap(field), ...tail]);

    // The same invoice rebuilt reads the same: the rebuilding is right.
    expect(build("lnbcrt100n", tagged).slice(0, -6)).toBe(text.slice(0, -6));
    expect(decodeBolt11(build("lnbcrt100n", [...others, hash])).paymentHash).toBe(paymentHash);
    expect(() => decodeBolt11(build("lnbcrt100n", others))).toThrow(/payment hash/);
    expect(() => decodeBolt11(build("lnbcrt100n", [...tagged, hash]))).toThrow(/payment hash/);
    // A `p` of another length is skipped (BOLT #11), so it does not count as one.
    expect(decodeBolt11(build("lnbcrt100n", [[1, hash[1].slice(0, 51)], ...tagged])).paymentHash).toBe(paymentHash);
    expect(() => decodeBolt11(build("lnltc100n", tagged))).toThrow(/known network/);
    expect(() => decodeBolt11(build("lnbcrt100u", tagged))).not.toThrow();
    expect(decodeBolt11(build("lnbcrt10p", tagged)).msat).toBe(1n);
    expect(() => decodeBolt11(build("lnbcrt1p", tagged))).toThrow(/millisatoshi/);
    expect(() => decodeBolt11(build("lnbcrt0100n", tagged))).toThrow(/leading zero/);
    expect(() => decodeBolt11(build("lnbcrt100n", [...others, [1, [...hash[1], ...signature]]], []))).toThrow(TypeError);
  });
});

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/** bech32 (BIP-173) of `hrp` and `words`, the checksum computed here: for invoices no library would sign. */
function encode(hrp: string, words: number[]): string {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  let chk = 1;
  for (const v of [...codes.map((c) => c >> 5), 0, ...codes.map((c) => c & 31), ...words, 0, 0, 0, 0, 0, 0]) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i]!;
  }
  chk ^= 1;
  const checksum = Array.from({ length: 6 }, (_, i) => (chk >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...words, ...checksum].map((w) => CHARSET[w]).join("")}`;
}
