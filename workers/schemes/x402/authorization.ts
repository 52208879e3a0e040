/**
 * The local check of an x402 `exact` EVM payment (x402-foundation
 * `specs/schemes/exact/scheme_exact_evm.md`, "Verification"): everything the facilitator's
 * `/verify` checks that needs no chain — the EIP-3009 `TransferWithAuthorization` pays the
 * requirement's payee exactly the requirement's amount, inside its validity window, and its
 * EIP-712 signature (domain: the asset's `name` and `version` from the requirement's `extra`,
 * the network's chain id, the asset as verifying contract) recovers to `authorization.from`.
 * A payment failing here never reaches the facilitator.
 *
 * Reasons are the facilitator's own words (`@x402/evm`'s `invalid_exact_evm_…` codes), so a
 * client reads the same detail whichever refused it. Only ECDSA signatures of an externally
 * owned account are accepted: a smart-wallet signature (ERC-1271, ERC-6492) can be checked
 * only on the chain, and a forged one would then cost a facilitator call.
 *
 * Libraries: secp256k1 public-key recovery is `@noble/secp256k1`'s (the audited 5 KB
 * standalone), keccak-256 `@noble/hashes`' (the copy viem uses). The EIP-712 hash of this one
 * struct is written here (EIP-712 §"Definition of hashStruct" for a struct of atomic fields
 * only, `encodeData` = 32-byte words): viem's `hashTypedData` (its ABI encoder, typed-data
 * validation and error classes) and `recoverAddress` (`@noble/curves`) would add 12 KiB
 * gzipped to a Worker budgeted at 85 KiB with every tier, against about 5 KiB for this. The
 * unit test (test/unit/workers/schemes/x402/authorization.test.ts) pins the hash to viem's
 * `hashTypedData` and the recovery to signatures of viem accounts.
 */
import { keccak_256 } from "@noble/hashes/sha3";
import { recoverPublicKey } from "@noble/secp256k1";
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { type Result, refuse } from "../../../shared/result.ts";
import { toHex, utf8 } from "../../../shared/wire/encoding.ts";

/** EIP-712's type hash of the domain tollbooth signs under (no `salt`, as `@x402/evm` builds it). */
const DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
/** EIP-3009's signed struct (`transferWithAuthorization`), as `@x402/evm` types it. */
const AUTHORIZATION_TYPE =
  "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

/** Seconds of margin the facilitator asks of `validBefore` (`@x402/evm`: `validBefore ≥ now + 6`). */
export const VALID_BEFORE_MARGIN_SECONDS = 6;

/** Why the local check refused a payment (on the wire: `x402_<reason>`, the facilitator's code in `detail`). */
export type AuthorizationError = "malformed" | "invalid" | "expired";

/** An EIP-3009 authorization with its signature, every field in its wire form. */
interface Signed {
  signature: string;
  authorization: { from: string; to: string; value: string; validAfter: string; validBefore: string; nonce: string };
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
/** A uint256 in decimal (78 digits at most). */
const UINT = /^(0|[1-9][0-9]{0,77})$/;

/** The payload's signed authorization, when every field has the form EIP-3009 gives it. */
function signedOf(payload: PaymentPayload): Signed | null {
  const p = payload.payload as { signature?: unknown; authorization?: Record<string, unknown> } | undefined;
  const a = p?.authorization;
  if (typeof p?.signature !== "string" || !/^0x(?:[0-9a-fA-F]{2})+$/.test(p.signature) || typeof a !== "object" || a === null) return null;
  const { from, to, value, validAfter, validBefore, nonce } = a;
  const uints = [value, validAfter, validBefore].every((v) => typeof v === "string" && UINT.test(v));
  if (
    !uints ||
    typeof from !== "string" ||
    !ADDRESS.test(from) ||
    typeof to !== "string" ||
    !ADDRESS.test(to) ||
    typeof nonce !== "string" ||
    !BYTES32.test(nonce)
  )
    return null;
  return p as Signed;
}

/** Bytes of `0x`-prefixed hex of even length (already checked). */
const hexBytes = (hex: string): Uint8Array => Uint8Array.from(hex.slice(2).match(/../g) ?? [], (h) => parseInt(h, 16));

/** A 32-byte big-endian word of a uint256, or null when it does not fit. */
function word(n: bigint): Uint8Array | null {
  if (n < 0n || n >= 1n << 256n) return null;
  return hexBytes(`0x${n.toString(16).padStart(64, "0")}`);
}

/** keccak-256 of the concatenation of `parts`. */
function keccak(...parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return keccak_256(all);
}

/**
 * Whether a 40-hex-digit address is acceptable as viem reads it (`isAddress`, strict): all
 * lowercase, all uppercase, or mixed case matching its EIP-55 checksum.
 */
function checksumOk(address: string): boolean {
  const digits = address.slice(2);
  if (digits === digits.toLowerCase() || digits === digits.toUpperCase()) return true;
  const hash = toHex(keccak_256(utf8(digits.toLowerCase())));
  return [...digits].every((c, i) =>
    /[a-f]/i.test(c) ? (parseInt(hash[i]!, 16) >= 8 ? c === c.toUpperCase() : c === c.toLowerCase()) : true,
  );
}

/** keccak-256 of the two type strings, computed on first use. */
let typeHashes: { domain: Uint8Array; authorization: Uint8Array } | undefined;
/** Domain separators by domain: the policy's assets only (a requirement is always one the gateway offers). */
const separators = new Map<string, Uint8Array>();

/** The EIP-712 domain separator of `domain`, computed once per domain. */
function separatorOf(domain: { name: string; version: string; chainId: bigint; verifyingContract: string }): Uint8Array | null {
  const key = `${domain.name}\n${domain.version}\n${domain.chainId}\n${domain.verifyingContract.toLowerCase()}`;
  let separator = separators.get(key);
  if (separator) return separator;
  const chainId = word(domain.chainId);
  if (!chainId) return null;
  typeHashes ??= { domain: keccak_256(utf8(DOMAIN_TYPE)), authorization: keccak_256(utf8(AUTHORIZATION_TYPE)) };
  separator = keccak(
    typeHashes.domain,
    keccak_256(utf8(domain.name)),
    keccak_256(utf8(domain.version)),
    chainId,
    word(BigInt(domain.verifyingContract))!,
  );
  separators.set(key, separator);
  return separator;
}

/**
 * The EIP-712 digest the payer signs: `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(authorization))`,
 * every atomic field one 32-byte word (addresses and uint256 left-padded, `bytes32` as is,
 * strings as their keccak-256).
 */
function digestOf(
  a: Signed["authorization"],
  domain: { name: string; version: string; chainId: bigint; verifyingContract: string },
): Uint8Array | null {
  const domainSeparator = separatorOf(domain);
  const fields = [
    word(BigInt(a.from)),
    word(BigInt(a.to)),
    word(BigInt(a.value)),
    word(BigInt(a.validAfter)),
    word(BigInt(a.validBefore)),
    hexBytes(a.nonce),
  ];
  if (!domainSeparator || fields.some((f) => f === null)) return null;
  const structHash = keccak(typeHashes!.authorization, ...(fields as Uint8Array[]));
  return keccak(Uint8Array.of(0x19, 0x01), domainSeparator, structHash);
}

/** The signature's bytes as `@noble/secp256k1`'s recovered form (recovery id, r, s), or null when it is no 65-byte ECDSA signature. */
function recoveredForm(signature: string): Uint8Array | null {
  if (signature.length !== 2 + 130) return null;
  const bytes = hexBytes(signature);
  // v: 27 / 28 (Ethereum's), or the bare recovery id 0 / 1 (as viem accepts).
  const v = bytes[64]!;
  const recovery = v === 27 || v === 28 ? v - 27 : v === 0 || v === 1 ? v : -1;
  if (recovery < 0) return null;
  const out = new Uint8Array(65);
  out[0] = recovery;
  out.set(bytes.subarray(0, 64), 1);
  return out;
}

/** The address whose key made `signature` over `digest` (lowercase `0x` hex), or null when none can. */
function signer(digest: Uint8Array, signature: string): string | null {
  const sig = recoveredForm(signature);
  if (!sig) return null;
  try {
    const publicKey = recoverPublicKey(sig, digest, { prehash: false, isCompressed: false });
    // An Ethereum address: the last 20 bytes of keccak-256 of the 64-byte public key (no 0x04 prefix).
    return `0x${toHex(keccak_256(publicKey.subarray(1))).slice(-40)}`;
  } catch {
    return null;
  }
}

/**
 * Check `payload` (an `exact` EVM payment, decoded) against `requirement` (the one offered it
 * matched, its `amount` the amount the client signed) at `nowMs` (unix ms), with no network call.
 * @returns the payer (`authorization.from`, lowercase), verified by its signature; or
 *   `malformed` (the authorization or signature is not of EIP-3009's form), `expired`
 *   (`validBefore` within 6 s), `invalid` (another payee or amount, not valid yet, a signature
 *   that does not recover to `from`), with the facilitator's code as `detail`
 */
export function checkAuthorization(
  payload: PaymentPayload,
  requirement: PaymentRequirements,
  nowMs: number,
): Result<{ payer: string }, AuthorizationError> {
  const signed = signedOf(payload);
  if (!signed) return refuse("malformed", "invalid_exact_evm_failed_to_parse_signature");
  const a = signed.authorization;
  if (a.to.toLowerCase() !== requirement.payTo.toLowerCase()) return refuse("invalid", "invalid_exact_evm_recipient_mismatch");
  if (BigInt(a.value) !== BigInt(requirement.amount)) return refuse("invalid", "invalid_exact_evm_payload_authorization_value_mismatch");
  const nowS = BigInt(Math.floor(nowMs / 1000));
  if (BigInt(a.validBefore) < nowS + BigInt(VALID_BEFORE_MARGIN_SECONDS))
    return refuse("expired", "invalid_exact_evm_payload_authorization_valid_before");
  if (BigInt(a.validAfter) > nowS) return refuse("invalid", "invalid_exact_evm_payload_authorization_valid_after");
  const extra = requirement.extra as { name: string; version: string };
  const chainId = BigInt(requirement.network.slice("eip155:".length));
  // viem (the facilitator's) refuses a mixed-case address whose EIP-55 checksum is wrong.
  if (!checksumOk(a.from) || !checksumOk(a.to)) return refuse("invalid", "invalid_exact_evm_signature");
  const digest = digestOf(a, { name: extra.name, version: extra.version, chainId, verifyingContract: requirement.asset });
  if (!digest) return refuse("invalid", "invalid_exact_evm_signature");
  const from = signer(digest, signed.signature);
  if (from === null || from !== a.from.toLowerCase()) return refuse("invalid", "invalid_exact_evm_signature");
  return { ok: true, payer: from };
}
