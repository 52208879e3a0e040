/**
 * `readBolt11` (workers/schemes/l402/bolt11.ts): the amount, payment hash, timestamp and
 * expiry of BOLT11 invoices signed by the `bolt11` library (what a node makes) read exactly
 * as light-bolt11-decoder (the Worker's decoder before it) reads them, for every amount
 * multiplier and network; malformed invoices refused.
 */
import { randomBytes } from "node:crypto";
import { bech32 } from "@scure/base";
import bolt11 from "bolt11";
import { decode } from "light-bolt11-decoder";
import { describe, expect, it } from "vitest";
import { readBolt11 } from "../../../../../workers/schemes/l402/bolt11.ts";
import { REGTEST, STANDIN_NODE_KEY } from "../../../../helpers/lightning-standin.ts";

const MAINNET = { bech32: "bc", pubKeyHash: 0, scriptHash: 5, validWitnessVersions: [0, 1] };
const TESTNET = { bech32: "tb", pubKeyHash: 111, scriptHash: 196, validWitnessVersions: [0, 1] };

/** A signed invoice for `msat` (undefined: no amount), with a fresh payment hash. */
function invoice(msat: string | undefined, opts: { network?: typeof REGTEST; expiry?: number; description?: string } = {}) {
  const paymentHash = randomBytes(32).toString("hex");
  const tags: Array<{ tagName: string; data: unknown }> = [
    { tagName: "payment_hash", data: paymentHash },
    { tagName: "description", data: opts.description ?? "tollbooth" },
  ];
  if (opts.expiry !== undefined) tags.push({ tagName: "expire_time", data: opts.expiry });
  const encoded = bolt11.encode({
    network: opts.network ?? REGTEST,
    ...(msat !== undefined ? { millisatoshis: msat } : {}),
    timestamp: 1_800_000_000,
    tags,
  } as never);
  const text = bolt11.sign(encoded, STANDIN_NODE_KEY).paymentRequest!;
  return { text, paymentHash };
}

/** What light-bolt11-decoder reads of the same invoice. */
function reference(text: string) {
  const d = decode(text);
  const section = (name: string) => (d.sections.find((s) => s.name === name) as { value?: unknown } | undefined)?.value;
  return {
    msat: section("amount") as string | undefined,
    paymentHash: section("payment_hash"),
    timestamp: section("timestamp"),
    expiry: d.expiry,
  };
}

describe("readBolt11", () => {
  it("reads what light-bolt11-decoder reads, for amounts in every multiplier, no amount, each network and an explicit expiry", () => {
    const cases: Array<[string | undefined, Parameters<typeof invoice>[1]]> = [
      ["10000", {}], // 10 sats: 100n
      ["1000", { network: MAINNET }],
      ["1", {}], // 1 msat: 10p
      ["123456789", { network: TESTNET }],
      ["250000000000", {}], // 2.5 BTC
      ["100000000", {}], // 1m
      [undefined, {}],
      ["21000", { expiry: 600, description: "d".repeat(300) }],
      ["21000", { expiry: 2 ** 40 }],
    ];
    for (const [msat, opts] of cases) {
      const { text, paymentHash } = invoice(msat, opts);
      const got = readBolt11(text);
      const want = reference(text);
      expect(got, text).toMatchObject({ msat: want.msat, paymentHash: want.paymentHash, timestamp: want.timestamp, expiry: want.expiry });
      expect(got.paymentHash).toBe(paymentHash);
      expect(got.msat).toBe(msat);
      expect(got.timestamp).toBe(1_800_000_000);
      expect(readBolt11(text.toUpperCase())).toEqual(got);
    }
    expect(readBolt11(invoice("21000", { expiry: 600 }).text).expiry).toBe(600);
    expect(readBolt11(invoice("21000").text).expiry).toBe(3600);
    expect(readBolt11(invoice("21000", { network: MAINNET }).text).currency).toBe("bc");
  });

  it("refuses a changed character (checksum), another human-readable part, a bad amount, a truncated data part, an over-long text", () => {
    const { text } = invoice("10000");
    const i = text.length - 20;
    const flipped = text.slice(0, i) + (text[i] === "q" ? "p" : "q") + text.slice(i + 1);
    expect(() => readBolt11(flipped)).toThrow(TypeError);
    expect(() => readBolt11(`x${text}`)).toThrow(TypeError);
    expect(() => readBolt11("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")).toThrow(/human-readable/);
    // Amounts a valid checksum can still carry but BOLT #11 forbids.
    const sign = (hrp: string, words: number[]) => bolt11Words(hrp, words);
    const data = readWords(text);
    expect(() => readBolt11(sign("lnbcrt15p", data))).toThrow(/pico-bitcoin/);
    expect(() => readBolt11(sign("lnbcrt010u", data))).toThrow(/leading zero/);
    expect(() => readBolt11(sign("lnbcrt10u", data.slice(0, 50)))).toThrow(/too short/);
    expect(() => readBolt11(sign("lnbcrt10u", [...data.slice(0, 7), 1, 31, 31, ...data.slice(-104)]))).toThrow(/runs past/);
    expect(() => readBolt11(`lnbcrt1${"q".repeat(7100)}`)).toThrow(/longer than/);
  });
});

/** The data words of an invoice (timestamp, tags, signature). */
function readWords(text: string): number[] {
  return bech32Decode(text).words;
}

const bech32Decode = (text: string) => bech32.decode(text as `${string}1${string}`, 10_000);
const bolt11Words = (hrp: string, words: number[]) => bech32.encode(hrp, words, 10_000);
