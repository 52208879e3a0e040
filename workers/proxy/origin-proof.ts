/**
 * The origin proof (docs/gateway.md, "Origin check"): every forwarded request carries
 * `Tollbooth-Caller`, a `Content-Digest` (RFC 9530) of the exact body forwarded, and
 * `Tollbooth-Signature: t=<unix s>, kid=<key id>, sig=<HMAC-SHA256>` over
 * canonical([label, t, caller, method, path+query, content-digest]), so an origin can check
 * that a request came through tollbooth, for that caller, with that body.
 */

import { type HmacKey, hmac } from "../../shared/credentials/keys.ts";
import { canonical, toBase64, toBase64Url } from "../../shared/wire/encoding.ts";

/** Domain-separation label of the origin proof. */
export const PROOF_LABEL = "tollbooth/origin-proof/v2";

/** Most origin proofs remembered within one second. */
const PROOF_MEMO_MAX = 1024;

/**
 * The bytes the origin proof signs: canonical([label, t, caller, method, path+query,
 * content-digest]). An origin recomputes them to check `Tollbooth-Signature`, and checks
 * that `Content-Digest` is the SHA-256 of the body it received (see docs/gateway.md, "Origin check").
 * @param t unix seconds
 * @param pathAndQuery the path and query the origin receives
 * @param contentDigest the `Content-Digest` value sent (see `contentDigest`)
 */
export function proofBytes(
  t: number,
  caller: string,
  method: string,
  pathAndQuery: string,
  contentDigest: string,
): Uint8Array<ArrayBuffer> {
  return canonical([PROOF_LABEL, t, caller, method, pathAndQuery, contentDigest]);
}

/** `Content-Digest` of the empty body: every request without one carries this. */
const EMPTY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";

/**
 * `Content-Digest` (RFC 9530) of a forwarded body: `sha-256=:<base64 of SHA-256>:`.
 * @param body the exact bytes forwarded (null or empty: the digest of the empty body)
 */
export async function contentDigest(body: Uint8Array<ArrayBuffer> | null): Promise<string> {
  if (!body || body.byteLength === 0) return EMPTY_DIGEST;
  return `sha-256=:${toBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", body)))}:`;
}

/**
 * The signer of origin proofs with `proofKey`. The proof of one second is the same bytes for
 * the same caller, method, path and body digest: it is signed once per second (an agent's
 * calls to one endpoint repeat the first three; GET, DELETE and repeated bodies repeat the
 * digest), at most `PROOF_MEMO_MAX` remembered.
 * @returns `(caller, method, pathAndQuery, digest) → the Tollbooth-Signature value`
 */
export function originProver(
  proofKey: () => Promise<HmacKey>,
): (caller: string, method: string, pathAndQuery: string, digest: string) => Promise<string> {
  let proofSecond = -1;
  const proofs = new Map<string, string>();
  return async (caller, method, pathAndQuery, digest) => {
    const t = Math.floor(Date.now() / 1000);
    if (t !== proofSecond) {
      proofSecond = t;
      proofs.clear();
    }
    const memo = JSON.stringify([caller, method, pathAndQuery, digest]);
    let value = proofs.get(memo);
    if (value === undefined) {
      const key = await proofKey();
      value = `t=${t}, kid=${key.kid}, sig=${toBase64Url(await hmac(key, proofBytes(t, caller, method, pathAndQuery, digest)))}`;
      if (proofs.size < PROOF_MEMO_MAX) proofs.set(memo, value);
    }
    return value;
  };
}
