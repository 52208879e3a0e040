/**
 * The HMAC keyring built from `TOLLBOOTH_SECRET`: one or more comma-separated secrets;
 * the first signs, all verify, so a secret can be rotated without invalidating the
 * challenges and tokens already in flight.
 */
import { canonical, toBase64Url, utf8 } from "../wire/encoding.ts";

/** One HMAC-SHA256 key and its public key id. */
export interface HmacKey {
  /** Key id: 8 base64url characters derived from the secret (SHA-256, first 6 bytes). */
  readonly kid: string;
  /** Non-extractable WebCrypto HMAC-SHA256 key (sign + verify). */
  readonly key: CryptoKey;
}

/** Keys by id; `signer` is the key new challenges and tokens are signed with. */
export interface Keyring {
  readonly signer: HmacKey;
  readonly byKid: ReadonlyMap<string, HmacKey>;
}

/** Secrets shorter than this (in bytes of UTF-8) are refused. */
export const MIN_SECRET_BYTES = 16;

/**
 * Split and check a secrets value (synchronous, so configuration errors surface at start).
 * @param secrets comma-separated secrets, each at least 16 bytes; surrounding spaces ignored
 * @param name the setting's name, for the error message
 * @returns the secrets, in order
 * @throws TypeError naming the setting when the value is missing, empty, or a secret is too short
 */
export function parseSecrets(secrets: string | undefined, name = "TOLLBOOTH_SECRET"): string[] {
  const list = (secrets ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (list.length === 0) throw new TypeError(`${name} is not set: give one or more comma-separated secrets`);
  for (const [i, secret] of list.entries()) {
    if (utf8(secret).byteLength < MIN_SECRET_BYTES) {
      throw new TypeError(`${name} key #${i + 1} is shorter than ${MIN_SECRET_BYTES} bytes`);
    }
  }
  return list;
}

/**
 * Build a keyring from a secrets value (`TOLLBOOTH_SECRET`).
 * @param secrets comma-separated secrets, each at least 16 bytes; surrounding spaces ignored
 * @param name the setting's name, for error messages
 * @throws TypeError as `parseSecrets`
 */
export async function importKeyring(secrets: string | undefined, name = "TOLLBOOTH_SECRET"): Promise<Keyring> {
  const keys: HmacKey[] = [];
  for (const secret of parseSecrets(secrets, name)) {
    const raw = utf8(secret);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", canonical(["tollbooth/kid/v1", secret])));
    // Invariant: keys are imported non-extractable; the raw secret never leaves this function.
    const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.push({ kid: toBase64Url(digest.subarray(0, 6)), key });
  }
  return { signer: keys[0]!, byKid: new Map(keys.map((k) => [k.kid, k])) };
}

/** HMAC-SHA256 of `data` (RFC 2104) with `key`. @returns 32 bytes */
export async function hmac(key: HmacKey, data: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", key.key, data));
}

/**
 * Check an HMAC-SHA256 tag.
 * Invariant: the comparison is WebCrypto's `verify`, which is constant-time; tags are
 * never compared with `===`.
 */
export async function hmacVerify(key: HmacKey, tag: Uint8Array<ArrayBuffer>, data: Uint8Array<ArrayBuffer>): Promise<boolean> {
  return crypto.subtle.verify("HMAC", key.key, tag, data);
}
