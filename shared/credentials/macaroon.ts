/**
 * Macaroons (Birgisson et al., NDSS 2014) in the V2 binary format of libmacaroons,
 * gopkg.in/macaroon.v2 and the npm `macaroon` package (3.x), first-party caveats only.
 *
 * Binary form: the version byte `2`, then fields, each `type byte ‖ uvarint length ‖ data`
 * (the end-of-section field `0` has no length or data):
 *
 *   2 ‖ [location(1)] ‖ identifier(2) ‖ EOS(0)
 *     ‖ for each caveat: [location(1)] ‖ identifier(2) ‖ [vid(4)] ‖ EOS(0)
 *     ‖ EOS(0) ‖ signature(6)
 *
 * Signature chain (libmacaroons): `key = HMAC-SHA256("macaroons-key-generator", rootKey)`,
 * `sig = HMAC(key, identifier)`, then for each first-party caveat `sig = HMAC(sig, caveatId)`.
 * The location is not signed. WebCrypto only: this module runs in workerd.
 */
import { type Result, refuse } from "../result.ts";

/** A macaroon with first-party caveats only. */
export interface Macaroon {
  /** Location hint (UTF-8; not covered by the signature). Empty: no location field. */
  location: string;
  /** Identifier, opaque bytes (the root key is found or derived from it). */
  identifier: Uint8Array;
  /** First-party caveat ids, in order, as bytes (usually UTF-8 `key=value`). */
  caveats: Uint8Array[];
  /** HMAC-SHA256 chain tag, 32 bytes. */
  signature: Uint8Array;
}

/** Most caveats a decoded macaroon may carry. */
export const MACAROON_MAX_CAVEATS = 64;
/** Most bytes an encoded macaroon may have (8 KiB). */
export const MACAROON_MAX_BYTES = 8192;

const VERSION = 2;
const FIELD_EOS = 0;
const FIELD_LOCATION = 1;
const FIELD_IDENTIFIER = 2;
const FIELD_VID = 4;
const FIELD_SIGNATURE = 6;
const SIGNATURE_BYTES = 32;

const textEncoder = new TextEncoder();
const KEY_GENERATOR = textEncoder.encode("macaroons-key-generator");

// ---------------------------------------------------------------------------
// Encoding

/** Append an unsigned LEB128 varint (Go `binary.AppendUvarint`, minimal form). */
function pushUvarint(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function pushField(out: number[], type: number, data: Uint8Array): void {
  out.push(type);
  pushUvarint(out, data.byteLength);
  for (const b of data) out.push(b);
}

/**
 * Encode a macaroon in the V2 binary format, byte for byte as libmacaroons,
 * gopkg.in/macaroon.v2 and npm `macaroon` do (an empty location is omitted).
 * @throws TypeError when the signature is not 32 bytes
 */
export function encodeMacaroon(m: Macaroon): Uint8Array<ArrayBuffer> {
  if (m.signature.byteLength !== SIGNATURE_BYTES) throw new TypeError("encodeMacaroon(): signature must be 32 bytes");
  const out: number[] = [VERSION];
  if (m.location !== "") pushField(out, FIELD_LOCATION, textEncoder.encode(m.location));
  pushField(out, FIELD_IDENTIFIER, m.identifier);
  out.push(FIELD_EOS);
  for (const caveat of m.caveats) {
    pushField(out, FIELD_IDENTIFIER, caveat);
    out.push(FIELD_EOS);
  }
  out.push(FIELD_EOS);
  pushField(out, FIELD_SIGNATURE, m.signature);
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------
// Decoding

/** Thrown inside `decodeMacaroon` only; turned into a refusal before it returns. */
class Refusal {
  readonly reason: "malformed" | "third_party_caveat";
  constructor(reason: "malformed" | "third_party_caveat") {
    this.reason = reason;
  }
}

/** A cursor over the encoded bytes; every read is bounds-checked. */
class Reader {
  private i = 0;
  private readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  get done(): boolean {
    return this.i === this.bytes.byteLength;
  }

  peek(): number | undefined {
    return this.bytes[this.i];
  }

  byte(): number {
    const b = this.bytes[this.i++];
    if (b === undefined) throw new Refusal("malformed");
    return b;
  }

  /**
   * An unsigned varint of at most 2 bytes (values < 16384; the whole macaroon is at most
   * 8 KiB). Invariant: only the minimal encoding is accepted, so every macaroon has exactly
   * one binary spelling.
   */
  uvarint(): number {
    const b0 = this.byte();
    if (b0 < 0x80) return b0;
    const b1 = this.byte();
    if (b1 === 0 || b1 >= 0x80) throw new Refusal("malformed");
    return (b0 & 0x7f) | (b1 << 7);
  }

  /** A field of the given type (not EOS): its data; anything else is malformed. */
  field(type: number): Uint8Array {
    if (this.byte() !== type) throw new Refusal("malformed");
    const length = this.uvarint();
    if (length > this.bytes.byteLength - this.i) throw new Refusal("malformed");
    // A copy as a plain Uint8Array (Node Buffer.slice would return a view).
    const data = new Uint8Array(this.bytes.subarray(this.i, this.i + length));
    this.i += length;
    return data;
  }

  eos(): void {
    if (this.byte() !== FIELD_EOS) throw new Refusal("malformed");
  }
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decode a V2 binary macaroon, strictly.
 *
 * Refused as `"malformed"`: another version byte, fields out of the order above (so a
 * duplicate or unknown field type), a non-minimal varint, a length past the end, an empty
 * or non-UTF-8 location, a caveat location without a verification id, a signature that is
 * not 32 bytes, trailing bytes, more than `MACAROON_MAX_CAVEATS` caveats or more than
 * `MACAROON_MAX_BYTES` bytes. A caveat with a verification id (a third-party caveat) is
 * refused as `"third_party_caveat"`.
 * @returns the macaroon, or the reason it was refused (never throws)
 */
export function decodeMacaroon(bytes: Uint8Array): Result<{ macaroon: Macaroon }, "malformed" | "third_party_caveat"> {
  if (bytes.byteLength > MACAROON_MAX_BYTES) return refuse("malformed");
  try {
    const r = new Reader(bytes);
    if (r.byte() !== VERSION) return refuse("malformed");
    let location = "";
    if (r.peek() === FIELD_LOCATION) {
      const raw = r.field(FIELD_LOCATION);
      // Invariant: the reference encoders omit an empty location, so an empty one is a second spelling.
      if (raw.byteLength === 0) return refuse("malformed");
      try {
        location = utf8Strict.decode(raw);
      } catch {
        return refuse("malformed");
      }
    }
    const identifier = r.field(FIELD_IDENTIFIER);
    r.eos();
    const caveats: Uint8Array[] = [];
    while (r.peek() !== FIELD_EOS) {
      if (caveats.length === MACAROON_MAX_CAVEATS) return refuse("malformed");
      const hasLocation = r.peek() === FIELD_LOCATION;
      if (hasLocation) r.field(FIELD_LOCATION);
      const id = r.field(FIELD_IDENTIFIER);
      if (r.peek() === FIELD_VID) return refuse("third_party_caveat");
      // A first-party caveat carries no location in any reference encoder.
      if (hasLocation) return refuse("malformed");
      r.eos();
      caveats.push(id);
    }
    r.eos();
    const signature = r.field(FIELD_SIGNATURE);
    if (signature.byteLength !== SIGNATURE_BYTES || !r.done) return refuse("malformed");
    return { ok: true, macaroon: { location, identifier, caveats, signature } };
  } catch (e) {
    if (e instanceof Refusal) return refuse(e.reason);
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Signature chain

async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const k = await crypto.subtle.importKey("raw", copy(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, copy(data)));
}

/** A fresh ArrayBuffer-backed copy (WebCrypto wants `BufferSource` over a plain ArrayBuffer). */
function copy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

/** `HMAC-SHA256(key = "macaroons-key-generator", data = rootKey)`, as libmacaroons. */
async function derivedKey(rootKey: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  if (rootKey.byteLength === 0) throw new TypeError("macaroon root key must not be empty");
  return hmacSha256(KEY_GENERATOR, rootKey);
}

/**
 * Mint a macaroon: `sig = HMAC(HMAC("macaroons-key-generator", rootKey), identifier)`, then
 * `sig = HMAC(sig, UTF-8(caveat))` for each first-party caveat, in order.
 * @param rootKey secret root key, at least 1 byte
 * @param identifier opaque identifier bytes (copied)
 * @param caveats first-party caveat ids, as text
 * @param location location hint (not signed); `""` for none
 * @throws TypeError when the root key is empty
 */
export async function mintMacaroon(rootKey: Uint8Array, identifier: Uint8Array, caveats: string[], location: string): Promise<Macaroon> {
  let m: Macaroon = {
    location,
    identifier: copy(identifier),
    caveats: [],
    signature: await hmacSha256(await derivedKey(rootKey), identifier),
  };
  for (const caveat of caveats) m = await addCaveat(m, caveat);
  return m;
}

/**
 * Attenuate: append a first-party caveat, `sig' = HMAC(sig, UTF-8(caveat))`. Needs only the
 * macaroon (any holder can narrow it, none can widen it). Does not modify `m`.
 * @returns a new macaroon with the caveat last
 */
export async function addCaveat(m: Macaroon, caveat: string): Promise<Macaroon> {
  const id = textEncoder.encode(caveat);
  return { location: m.location, identifier: m.identifier, caveats: [...m.caveats, id], signature: await hmacSha256(m.signature, id) };
}

/**
 * Check a macaroon's signature chain under `rootKey` (caveats are not interpreted here).
 * Invariant: the last link is checked with WebCrypto `verify` (constant time), never `===`.
 * @returns true when the signature is the chain recomputed from `rootKey`
 * @throws TypeError when the root key is empty
 */
export async function verifyMacaroonSignature(rootKey: Uint8Array, m: Macaroon): Promise<boolean> {
  let key = await derivedKey(rootKey);
  const links = [m.identifier, ...m.caveats];
  for (const link of links.slice(0, -1)) key = await hmacSha256(key, link);
  const last = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  return crypto.subtle.verify("HMAC", last, copy(m.signature), copy(links[links.length - 1]!));
}

// The macaroon's text form is standard base64 (shared/wire/encoding.ts).
export { fromBase64, toBase64 } from "../wire/encoding.ts";
