/**
 * Byte encodings used by tollbooth's wire formats: strict base64url (RFC 4648 §5,
 * no padding), lowercase hex, and the canonical length-delimited encoding that every
 * HMAC in tollbooth signs.
 */

const textEncoder = new TextEncoder();

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return textEncoder.encode(text) as Uint8Array<ArrayBuffer>;
}

/** Lowercase hex of bytes (2 characters per byte). */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/**
 * base64url without padding (RFC 4648 §5).
 * @param bytes any bytes
 * @returns characters from `[A-Za-z0-9_-]`, no `=`
 */
export function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Strict base64url decoding (RFC 4648 §5, no padding).
 *
 * Invariant: exactly one string decodes to a given byte sequence. Padding, the
 * standard alphabet, whitespace and non-zero trailing bits are all rejected, so an
 * attacker cannot present a second spelling of a signed value ("padding games").
 * @returns the bytes, or `null` when the text is not canonical base64url
 */
export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> | null {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return null;
  let binary: string;
  try {
    binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    return null;
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  // Re-encoding must give back the input: rejects non-zero trailing bits.
  return toBase64Url(bytes) === text ? bytes : null;
}

/**
 * Canonical, delimiter-safe encoding of a list of fields, the input of every HMAC.
 *
 * Each field is written as `<UTF-8 byte length in decimal>:<value>` and the fields are
 * concatenated in a fixed order. Because every field carries its own length, no digits
 * or characters can shift from one field into its neighbour (the ALTCHA splicing
 * advisory GHSA-6gvq-jcmp-8959 came from signing `salt + number` with no delimiter).
 * @param fields strings or safe integers, in the order the format defines
 * @throws TypeError when a number is not a safe integer
 */
export function canonical(fields: ReadonlyArray<string | number>): Uint8Array<ArrayBuffer> {
  let out = "";
  for (const field of fields) {
    if (typeof field === "number" && !Number.isSafeInteger(field)) {
      throw new TypeError(`canonical(): ${field} is not a safe integer`);
    }
    const value = String(field);
    out += `${utf8(value).byteLength}:${value}`;
  }
  return utf8(out);
}

/** Random bytes from the platform CSPRNG (WebCrypto `getRandomValues`). */
export function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(length));
}

/**
 * Standard base64 with padding (RFC 4648 §4): a binary macaroon's text form in L402, a
 * Structured Field byte sequence (`Content-Digest`).
 * @returns characters from `[A-Za-z0-9+/]`, padded with `=` to a multiple of 4
 */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

const STD = /^[A-Za-z0-9+/]*={0,2}$/;
const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Decode standard base64 (RFC 4648 §4) or base64url (§5), padded or not, strictly: one
 * alphabet only (no mixing), padding when present must complete the last quantum, no
 * whitespace or other characters, and non-zero trailing bits are refused (so a given byte
 * string has one spelling per alphabet and padding choice).
 * @returns the bytes, or `null` when the text is not base64
 */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> | null {
  if (!STD.test(text) && !B64URL.test(text)) return null;
  const body = text.replace(/=+$/, "");
  if (body.length !== text.length && text.length % 4 !== 0) return null;
  if (body.length % 4 === 1) return null;
  const std = body.replaceAll("-", "+").replaceAll("_", "/");
  let binary: string;
  try {
    binary = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
  } catch {
    return null;
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  // Re-encoding must give back the input: rejects non-zero trailing bits.
  return toBase64(bytes).replace(/=+$/, "") === std ? bytes : null;
}
