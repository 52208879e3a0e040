/**
 * `readBolt11(text)`: the fields of a BOLT11 Lightning invoice that tollbooth checks against
 * what its node reported (workers/schemes/l402/invoices.ts): the amount, the payment hash,
 * the timestamp and the expiry. BOLT #11 ("Invoice Protocol for Lightning Payments"):
 * bech32 (BIP 173, without its 90-character limit) of a human-readable part
 * `ln` + currency + optional amount (digits and a multiplier `m`, `u`, `n`, `p` of one
 * bitcoin), then 35 bits of timestamp (7 words), tagged fields (a 5-bit type, a 10-bit data
 * length in words, the data) and a 520-bit signature (104 words).
 *
 * The bech32 checksum comes from `@scure/base` (paulmillr's audited encodings); the layout
 * is read here. The signature is not checked: the invoice comes from the operator's own node
 * over an authenticated call, and what matters is that it carries the payment hash and the
 * amount the node reported, which the caller compares. Only what is read is validated: a
 * field tollbooth does not read (description, routing hints, features) is skipped.
 */
import { bech32 } from "@scure/base";

/** What `readBolt11` returns. */
export interface Bolt11Fields {
  /** The currency of the human-readable part (`bc`, `tb`, `bcrt`, `tbs`, `sb`…). */
  currency: string;
  /** The amount in millisatoshis as a decimal string; undefined for an invoice without an amount. */
  msat: string | undefined;
  /** Unix seconds when the invoice was made. */
  timestamp: number;
  /** The payment hash (tag `p`, 256 bits), 64 lowercase hex characters; undefined when absent. */
  paymentHash: string | undefined;
  /** Seconds after `timestamp` the invoice expires (tag `x`; 3600 when absent, as BOLT #11 says). */
  expiry: number;
}

/** Longest invoice read, in characters (BOLT #11 sets none; LND refuses longer than 7089). */
export const MAX_BOLT11_LENGTH = 7089;
/** Words of the signature at the end of the data part (520 bits: 64 bytes and a recovery id). */
const SIGNATURE_WORDS = 104;
/** Millisatoshis per unit of each multiplier of the amount (one bitcoin is 10^11 msat); `p` is a tenth. */
const MSAT_PER: Record<string, bigint> = { "": 100_000_000_000n, m: 100_000_000n, u: 100_000n, n: 100n };

/** A big-endian number of 5-bit words (at most 10 words: 50 bits, an exact JavaScript integer). */
function wordsToNumber(words: readonly number[]): number {
  let n = 0;
  for (const w of words) n = n * 32 + w;
  return n;
}

/** The millisatoshis of a human-readable part's amount (digits and multiplier), as a decimal string. */
function amountMsat(digits: string, multiplier: string): string {
  if (/^0\d/.test(digits)) throw new TypeError("BOLT11 amount has a leading zero");
  const n = BigInt(digits);
  if (multiplier === "p") {
    // A pico-bitcoin is a tenth of a millisatoshi: only whole millisatoshis are payable.
    if (n % 10n !== 0n) throw new TypeError("BOLT11 amount in pico-bitcoin is not a whole number of millisatoshis");
    return String(n / 10n);
  }
  return String(n * MSAT_PER[multiplier]!);
}

/**
 * Read a BOLT11 invoice.
 * @param text the invoice (any case, as bech32 allows; a `lightning:` prefix is not accepted)
 * @throws TypeError for anything that is not a well-formed invoice: a bad checksum or
 *   character, a human-readable part that is not `ln…` with a valid amount, a data part too
 *   short for the timestamp and signature, a tagged field running past the data
 */
export function readBolt11(text: string): Bolt11Fields {
  if (text.length > MAX_BOLT11_LENGTH) throw new TypeError(`BOLT11 invoice longer than ${MAX_BOLT11_LENGTH} characters`);
  let decoded: { prefix: string; words: number[] };
  try {
    decoded = bech32.decode(text as `${string}1${string}`, MAX_BOLT11_LENGTH);
  } catch (err) {
    throw new TypeError(`not bech32: ${(err as Error).message.slice(0, 80)}`);
  }
  const hrp = /^ln([a-z]+?)(?:(\d+)([munp]?))?$/.exec(decoded.prefix);
  if (!hrp) throw new TypeError("BOLT11 human-readable part is not ln<currency>[<amount><multiplier>]");
  const words = decoded.words;
  if (words.length < 7 + SIGNATURE_WORDS) throw new TypeError("BOLT11 data part too short");
  const fields: Bolt11Fields = {
    currency: hrp[1]!,
    msat: hrp[2] === undefined ? undefined : amountMsat(hrp[2], hrp[3] ?? ""),
    timestamp: wordsToNumber(words.slice(0, 7)),
    paymentHash: undefined,
    expiry: 3600,
  };
  const end = words.length - SIGNATURE_WORDS;
  for (let i = 7; i < end; ) {
    if (i + 3 > end) throw new TypeError("BOLT11 tagged field header runs past the data");
    const type = words[i]!;
    const length = words[i + 1]! * 32 + words[i + 2]!;
    const data = words.slice(i + 3, i + 3 + length);
    i += 3 + length;
    if (i > end) throw new TypeError("BOLT11 tagged field runs past the data");
    // p (1): the payment hash, read only at its length (BOLT #11: a reader skips a p field of another length).
    if (type === 1 && length === 52 && fields.paymentHash === undefined) {
      const bytes = bech32.fromWordsUnsafe(data);
      if (bytes) fields.paymentHash = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    // x (6): the expiry in seconds, big-endian.
    else if (type === 6 && length <= 10) fields.expiry = wordsToNumber(data);
  }
  return fields;
}
