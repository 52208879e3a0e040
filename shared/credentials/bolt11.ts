/**
 * The fields of a BOLT11 payment request the gateway checks in an invoice its Lightning
 * backend made (BOLT #11, "Human-Readable Part" and "Data Part"): its network, amount,
 * timestamp, expiry and payment hash. The bech32 checksum is verified (BIP-173, no length
 * limit: an invoice is longer than 90 characters); the node's signature is not (the invoice
 * comes from the operator's own backend, and the payer's wallet checks it). Small and exact:
 * the Worker's bundle carries no bech32 library for it.
 */

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
/** The currency prefixes of BOLT #11: mainnet, testnet, signet, regtest, simnet. */
const NETWORKS = new Set(["bc", "tb", "tbs", "bcrt", "sb"]);
/** Millisatoshis per unit of an amount with each multiplier (a bitcoin is 10^11 msat); `p` is a tenth. */
const MSAT_PER = { "": 100_000_000_000n, m: 100_000_000n, u: 100_000n, n: 100n } as const;
/** 5-bit words of the signature at the end of the data part (65 bytes). */
const SIGNATURE_WORDS = 104;
/** Words of the timestamp at the start of the data part (35 bits). */
const TIMESTAMP_WORDS = 7;
/** Tag `p` (payment hash) and its only valid length in words (256 bits and 4 of padding). */
const TAG_PAYMENT_HASH = 1;
const PAYMENT_HASH_WORDS = 52;
/** Tag `x` (expiry, seconds) and the default when it is absent. */
const TAG_EXPIRY = 6;
const DEFAULT_EXPIRY_SECONDS = 3600;

/** What `decodeBolt11` reads from an invoice. */
export interface Bolt11 {
  /** The currency prefix: `bc`, `tb`, `tbs`, `bcrt` or `sb`. */
  network: string;
  /** The amount in millisatoshis; null for an invoice with none. */
  msat: bigint | null;
  /** When it was made, unix seconds. */
  timestamp: number;
  /** Seconds after `timestamp` it expires (3600 when the invoice says nothing). */
  expirySeconds: number;
  /** The payment hash, 64 lowercase hex characters. */
  paymentHash: string;
}

/** BIP-173's checksum over the expanded human-readable part and the data words. */
function polymod(hrp: string, words: number[]): number {
  const values = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31), ...words];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i]!;
  }
  return chk;
}

/** The words as one unsigned integer, big-endian (at most 10 words: 50 bits, exact in a double). */
function wordsToNumber(words: number[]): number {
  if (words.length > 10) throw new TypeError("BOLT11: an integer field longer than 10 words");
  return words.reduce((n, w) => n * 32 + w, 0);
}

/** The amount of the human-readable part (digits and an optional multiplier) in millisatoshis. */
function amountMsat(digits: string, multiplier: string): bigint {
  if (digits.length > 1 && digits.startsWith("0")) throw new TypeError("BOLT11: an amount with a leading zero");
  const n = BigInt(digits);
  if (multiplier !== "p") return n * MSAT_PER[multiplier as keyof typeof MSAT_PER];
  if (n % 10n !== 0n) throw new TypeError("BOLT11: a pico-bitcoin amount that is not a whole millisatoshi");
  return n / 10n;
}

/**
 * Reads `invoice` (a BOLT11 payment request, lowercase or uppercase, not mixed).
 * @throws TypeError when it is not one: no separator, a character outside bech32's, a bad
 *   checksum, an unknown currency prefix or amount, a tagged field running past the signature,
 *   no valid payment hash or more than one
 */
export function decodeBolt11(invoice: string): Bolt11 {
  if (invoice !== invoice.toLowerCase() && invoice !== invoice.toUpperCase()) throw new TypeError("BOLT11: mixed case");
  const text = invoice.toLowerCase();
  const sep = text.lastIndexOf("1");
  const hrp = text.slice(0, sep);
  const head = /^ln([a-z]+?)(?:(\d+)([munp]?))?$/.exec(hrp);
  if (sep < 0 || !head || !NETWORKS.has(head[1]!)) throw new TypeError("BOLT11: not a payment request of a known network");
  const words = [...text.slice(sep + 1)].map((c) => CHARSET.indexOf(c));
  if (words.some((w) => w < 0)) throw new TypeError("BOLT11: a character outside bech32's");
  if (words.length < TIMESTAMP_WORDS + SIGNATURE_WORDS + 6 || polymod(hrp, words) !== 1) throw new TypeError("BOLT11: bad checksum");
  const end = words.length - 6 - SIGNATURE_WORDS;
  let expirySeconds = DEFAULT_EXPIRY_SECONDS;
  const hashes: string[] = [];
  for (let i = TIMESTAMP_WORDS; i < end; ) {
    if (i + 3 > end) throw new TypeError("BOLT11: a tagged field runs past the signature");
    const [tag, len] = [words[i]!, words[i + 1]! * 32 + words[i + 2]!];
    const data = words.slice(i + 3, i + 3 + len);
    i += 3 + len;
    if (i > end) throw new TypeError("BOLT11: a tagged field runs past the signature");
    if (tag === TAG_EXPIRY) expirySeconds = wordsToNumber(data);
    // A `p` of another length is skipped (BOLT #11: the reader MUST skip it).
    if (tag === TAG_PAYMENT_HASH && len === PAYMENT_HASH_WORDS) {
      let hex = "";
      for (let bit = 0; bit < 256; bit += 4) {
        const w = Math.floor(bit / 5);
        const pair = (data[w]! << 5) | (data[w + 1] ?? 0);
        hex += ((pair >> (6 - (bit % 5))) & 15).toString(16);
      }
      hashes.push(hex);
    }
  }
  if (hashes.length !== 1) throw new TypeError("BOLT11: not exactly one payment hash");
  return {
    network: head[1]!,
    msat: head[2] === undefined ? null : amountMsat(head[2], head[3]!),
    timestamp: wordsToNumber(words.slice(0, TIMESTAMP_WORDS)),
    expirySeconds,
    paymentHash: hashes[0]!,
  };
}
