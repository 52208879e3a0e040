/**
 * L402 (Lightning Labs' L402 protocol specification, bLIP-0026 revision, as Aperture
 * deploys it): the macaroon tollbooth mints beside an invoice, the challenge, and the check
 * of a paid credential `<macaroon>:<preimage>` (docs/wire-contract.md §10).
 *
 * The macaroon (V2 binary, `shared/credentials/macaroon.ts`) has location `tollbooth` and the 66-byte
 * identifier of Aperture's `l402/identifier.go`:
 *
 *   uint16 big-endian version (0) ‖ payment hash (32 bytes) ‖ token id (32 random bytes)
 *
 * Its root key is derived from the keyring and the identifier (`l402RootKey`), so nothing is
 * stored per macaroon and a rotated secret keeps verifying. Its first-party caveats, with
 * `<s>` the service: `services=<s>:0`, `<s>_valid_until=<unix s>`, `<s>_credits=<n>`,
 * `<s>_caller=<callerTag>`. A holder may add more of these; each must hold, so they only
 * narrow. Any other caveat is refused.
 */

import { type Result, refuse } from "../result.ts";
import { formatAuthParams } from "../wire/auth-params.ts";
import { canonical, randomBytes, toBase64Url, toHex, utf8 } from "../wire/encoding.ts";
import { type HmacKey, hmac, hmacVerify, type Keyring } from "./keys.ts";
import { decodeMacaroon, encodeMacaroon, fromBase64, type Macaroon, mintMacaroon, toBase64, verifyMacaroonSignature } from "./macaroon.ts";

/** Scheme names of the credential (`Authorization: L402 …`); `LSAT` is the former name. */
export const L402_SCHEMES = ["L402", "LSAT"] as const;
/** The location of every macaroon tollbooth mints (and the only one it accepts). */
export const L402_LOCATION = "tollbooth";
/** Identifier version this gateway mints and accepts. */
export const L402_IDENTIFIER_VERSION = 0;
/** Bytes of an identifier: 2 (version) + 32 (payment hash) + 32 (token id). */
export const L402_IDENTIFIER_BYTES = 66;
/** Longest credential text (`<macaroon>:<preimage>`) read, in characters (8 KiB). */
export const L402_MAX_CREDENTIAL = 8192;

/** Why an L402 credential was refused (on the wire: `l402_<reason>`, docs/wire-contract.md §10). */
export type L402Error = "malformed" | "bad_signature" | "wrong_preimage" | "wrong_service" | "wrong_caller" | "expired" | "unknown_caveat";

/** A credential read from its text: the macaroon and the 32-byte payment preimage. */
export interface L402Credential {
  macaroon: Macaroon;
  /** 32 bytes; its SHA-256 must be the identifier's payment hash. */
  preimage: Uint8Array;
}

/** What a verified credential grants. */
export interface L402Grant {
  /** 64 lowercase hex: the invoice's payment hash, from the identifier. */
  paymentHash: string;
  /** 64 lowercase hex: the identifier's random token id. */
  tokenId: string;
  /** Credits it buys: the smallest `<s>_credits` caveat, ≥ 1. */
  credits: number;
  /** Unix milliseconds when it stops being accepted: the smallest `<s>_valid_until` × 1000. */
  validUntilMs: number;
}

/** Domain-separation label of the root-key derivation (never reused by another format). */
const ROOT_LABEL = "tollbooth/l402-root/v1";
const HEX64 = /^[0-9a-f]{64}$/;
/** Plain decimal: no sign, leading zeros, exponent or fraction (at most 16 digits). */
const DIGITS = /^(0|[1-9][0-9]{0,15})$/;
const SERVICE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CREDENTIAL = /^([A-Za-z0-9+/_=-]+):([0-9a-f]{64})$/;
const SCHEME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/** Bytes of lowercase hex (even length, `[0-9a-f]` only). @throws TypeError otherwise */
function fromHex(hex: string, what: string): Uint8Array<ArrayBuffer> {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new TypeError(`${what} is not lowercase hex`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A plain decimal safe integer, or undefined. */
function plainInt(text: string): number | undefined {
  if (!DIGITS.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The 66-byte identifier: `uint16 BE 0 ‖ payment hash ‖ token id` (Aperture `l402/identifier.go`).
 * @param id.paymentHash 64 lowercase hex (32 bytes); `id.tokenId` 64 lowercase hex (32 bytes)
 * @throws TypeError when either is not 64 lowercase hex
 */
export function encodeIdentifier(id: { paymentHash: string; tokenId: string }): Uint8Array<ArrayBuffer> {
  if (!HEX64.test(id.paymentHash)) throw new TypeError("encodeIdentifier(): paymentHash must be 64 lowercase hex");
  if (!HEX64.test(id.tokenId)) throw new TypeError("encodeIdentifier(): tokenId must be 64 lowercase hex");
  const out = new Uint8Array(L402_IDENTIFIER_BYTES);
  // Bytes 0–1: version 0, big-endian (both zero).
  out.set(fromHex(id.paymentHash, "paymentHash"), 2);
  out.set(fromHex(id.tokenId, "tokenId"), 34);
  return out;
}

/**
 * Read a 66-byte version-0 identifier.
 * @returns the payment hash and token id as 64 lowercase hex each, or `"malformed"` for
 *   another length or version
 */
export function decodeIdentifier(bytes: Uint8Array): Result<{ paymentHash: string; tokenId: string }, "malformed"> {
  if (bytes.byteLength !== L402_IDENTIFIER_BYTES) return refuse("malformed");
  if (((bytes[0]! << 8) | bytes[1]!) !== L402_IDENTIFIER_VERSION) return refuse("malformed");
  return { ok: true, paymentHash: toHex(bytes.subarray(2, 34)), tokenId: toHex(bytes.subarray(34, 66)) };
}

/**
 * The caller caveat's value: base64url without padding (RFC 4648 §5) of the first 16 bytes
 * of SHA-256(UTF-8(caller)). It names the caller without revealing its identity.
 * @returns 22 characters
 */
export async function callerTag(caller: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(caller)));
  return toBase64Url(digest.subarray(0, 16));
}

/**
 * The macaroon root key of `identifier` under `key`:
 * `HMAC-SHA256(key, canonical(["tollbooth/l402-root/v1", hex(identifier)]))`. Deterministic,
 * so nothing is stored per macaroon.
 * @returns 32 bytes
 */
export async function l402RootKey(key: HmacKey, identifier: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return hmac(key, canonical([ROOT_LABEL, toHex(identifier)]));
}

/**
 * Mint the macaroon of an L402 challenge, signed with `keyring.signer`: location `tollbooth`,
 * a fresh random token id, and the caveats, in order, `services=<service>:0`,
 * `<service>_valid_until=<validUntil>`, `<service>_credits=<credits>`,
 * `<service>_caller=<callerTag(caller)>`.
 * @param opts.paymentHash the invoice's payment hash, 64 lowercase hex
 * @param opts.service service name, `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`
 * @param opts.validUntil unix seconds (safe integer ≥ 0); `opts.credits` safe integer ≥ 1
 * @param opts.caller the caller identity it is bound to
 * @returns the macaroon as standard base64 (RFC 4648 §4) of its V2 binary form, and the
 *   token id (64 lowercase hex)
 * @throws TypeError for an argument outside these shapes
 */
export async function mintL402(
  keyring: Keyring,
  opts: { paymentHash: string; service: string; validUntil: number; credits: number; caller: string },
): Promise<{ macaroon: string; tokenId: string }> {
  const { paymentHash, service, validUntil, credits, caller } = opts;
  if (!SERVICE.test(service)) throw new TypeError(`mintL402(): service ${JSON.stringify(service)} is not a service name`);
  if (!Number.isSafeInteger(validUntil) || validUntil < 0) throw new TypeError("mintL402(): validUntil must be a safe integer ≥ 0");
  if (!Number.isSafeInteger(credits) || credits < 1) throw new TypeError("mintL402(): credits must be a safe integer ≥ 1");
  const tokenId = toHex(randomBytes(32));
  const identifier = encodeIdentifier({ paymentHash, tokenId });
  const caveats = [
    `services=${service}:0`,
    `${service}_valid_until=${validUntil}`,
    `${service}_credits=${credits}`,
    `${service}_caller=${await callerTag(caller)}`,
  ];
  const m = await mintMacaroon(await l402RootKey(keyring.signer, identifier), identifier, caveats, L402_LOCATION);
  return { macaroon: toBase64(encodeMacaroon(m)), tokenId };
}

/**
 * The `WWW-Authenticate` field value of an L402 challenge, carrying the macaroon as both
 * `token` (bLIP-26) and `macaroon` (deployed clients):
 * `L402 version="0", token="<mac>", macaroon="<mac>", invoice="<bolt11>"`.
 */
export function formatL402Challenge(ch: { macaroon: string; invoice: string }): string {
  return formatAuthParams("L402", { version: "0", token: ch.macaroon, macaroon: ch.macaroon, invoice: ch.invoice });
}

/**
 * Read the credential text `<base64 macaroon>:<preimage>` (after the `L402 ` scheme, or the
 * whole `Tollbooth-L402` header): exactly one macaroon, standard base64 or base64url
 * (a comma-separated list is malformed), and 64 lowercase hex of the preimage.
 * @param value at most `L402_MAX_CREDENTIAL` characters
 * @returns the decoded credential; `"unknown_caveat"` for a macaroon with a third-party
 *   caveat; `"malformed"` for anything else that is not this shape (never throws)
 */
export function readL402Credential(value: string): Result<L402Credential, "malformed" | "unknown_caveat"> {
  if (value.length > L402_MAX_CREDENTIAL) return refuse("malformed");
  const match = CREDENTIAL.exec(value);
  if (!match) return refuse("malformed");
  const bytes = fromBase64(match[1]!);
  if (!bytes) return refuse("malformed");
  const decoded = decodeMacaroon(bytes);
  if (!decoded.ok) return refuse(decoded.reason === "third_party_caveat" ? "unknown_caveat" : "malformed");
  return { ok: true, macaroon: decoded.macaroon, preimage: fromHex(match[2]!, "preimage") };
}

/**
 * Read an `Authorization` field value.
 * @returns `null` when its scheme is not `L402` or `LSAT` (case-insensitive; e.g. `Bearer x`,
 *   which passes through to the origin); otherwise `readL402Credential` of what follows the
 *   scheme and exactly one space (a missing space is malformed)
 */
export function parseL402Authorization(header: string): null | ReturnType<typeof readL402Credential> {
  const scheme = SCHEME.exec(header)?.[0];
  if (scheme === undefined || !L402_SCHEMES.some((s) => s === scheme.toUpperCase())) return null;
  if (header[scheme.length] !== " ") return refuse("malformed");
  return readL402Credential(header.slice(scheme.length + 1));
}

/**
 * Verify a paid credential for `ctx.caller` at this gateway's `ctx.service`.
 *
 * Checks, in order, stopping at the first failure:
 * 1. shape: location `tollbooth`, a 66-byte version-0 identifier → `malformed`;
 * 2. the HMAC chain, with the root key derived under each key of the keyring (any one
 *    passes, so secrets rotate) → `bad_signature`;
 * 3. SHA-256(preimage) equals the identifier's payment hash (constant time) → `wrong_preimage`;
 * 4. every `services` caveat is a comma-separated `name:tier` list (tier plain decimal;
 *    otherwise `malformed`) naming `<s>` → `wrong_service` (first, so another service's
 *    macaroon is refused as such);
 * 5. every caveat is UTF-8 `key=value` with key `services`, `<s>_valid_until`, `<s>_credits`
 *    or `<s>_caller` → `unknown_caveat`;
 * 6. every caller caveat equals `callerTag(ctx.caller)` → `wrong_caller`;
 * 7. every `valid_until` is plain decimal (else `malformed`) and later than now:
 *    `nowMs >= v * 1000` → `expired`;
 * 8. every `credits` is a plain decimal integer ≥ 1, and there is at least one credits and
 *    one valid_until caveat → `malformed`.
 * Single use of the payment (one set of credits per preimage) is not checked here.
 * @param ctx.nowMs unix milliseconds
 * @returns the grant (smallest credits, earliest expiry), or the reason it was refused
 */
export async function verifyL402(
  keyring: Keyring,
  cred: L402Credential,
  ctx: { service: string; caller: string; nowMs: number },
): Promise<Result<L402Grant, L402Error>> {
  const { macaroon: m, preimage } = cred;
  if (m.location !== L402_LOCATION) return refuse("malformed");
  const id = decodeIdentifier(m.identifier);
  if (!id.ok) return refuse("malformed");

  let signed = false;
  for (const key of keyring.byKid.values()) {
    if (await verifyMacaroonSignature(await l402RootKey(key, m.identifier), m)) {
      signed = true;
      break;
    }
  }
  if (!signed) return refuse("bad_signature");

  // Invariant: the digest is compared through WebCrypto `verify` of an HMAC over the expected
  // hash (constant time), never with `===`.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(preimage)));
  const expected = m.identifier.slice(2, 34);
  if (!(await hmacVerify(keyring.signer, await hmac(keyring.signer, expected), digest))) return refuse("wrong_preimage");

  const s = ctx.service;
  const services: string[] = [];
  const callers: string[] = [];
  const validUntils: string[] = [];
  const credits: string[] = [];
  const lists = new Map([
    ["services", services],
    [`${s}_caller`, callers],
    [`${s}_valid_until`, validUntils],
    [`${s}_credits`, credits],
  ]);
  const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  let unknown = false;
  for (const caveat of m.caveats) {
    let cav: string;
    try {
      cav = text.decode(caveat);
    } catch {
      unknown = true;
      continue;
    }
    const eq = cav.indexOf("=");
    const list = eq < 0 ? undefined : lists.get(cav.slice(0, eq));
    if (!list) unknown = true;
    else list.push(cav.slice(eq + 1));
  }

  for (const value of services) {
    const entries = value.split(",").map((entry) => /^([^:]+):(.+)$/.exec(entry));
    if (entries.some((e) => !e || plainInt(e[2]!) === undefined)) return refuse("malformed");
    if (!entries.some((e) => e![1] === s)) return refuse("wrong_service");
  }
  // After the service: a macaroon of another service is refused as such, not for its
  // caveats (named after that service) being unknown here.
  if (unknown) return refuse("unknown_caveat");
  if (callers.length > 0) {
    const tag = await callerTag(ctx.caller);
    if (callers.some((c) => c !== tag)) return refuse("wrong_caller");
  }
  let validUntil = Infinity;
  for (const value of validUntils) {
    const v = plainInt(value);
    if (v === undefined) return refuse("malformed");
    if (ctx.nowMs >= v * 1000) return refuse("expired");
    validUntil = Math.min(validUntil, v);
  }
  let effective = Infinity;
  for (const value of credits) {
    const n = plainInt(value);
    if (n === undefined || n < 1) return refuse("malformed");
    effective = Math.min(effective, n);
  }
  if (validUntils.length === 0 || credits.length === 0) return refuse("malformed");
  return { ok: true, paymentHash: id.paymentHash, tokenId: id.tokenId, credits: effective, validUntilMs: validUntil * 1000 };
}
