/**
 * Every header and path name of tollbooth's wire contract (docs/wire-contract.md), in one
 * place, used by the Worker and by the agent side. Header names are lowercase (HTTP field
 * names are case-insensitive, RFC 9110 §5.1); the README and docs spell them capitalised.
 */

/** Path prefix of tollbooth's own endpoints (policy, challenge, verify, status). */
export const WELL_KNOWN = "/.well-known/tollbooth";
/** `GET` a fresh challenge (`?type=pow` default, `?type=l402`). */
export const CHALLENGE_PATH = `${WELL_KNOWN}/challenge`;
/** `POST` a credential (`{ type, … }`) → `{ token, expires_in, credits }`. */
export const VERIFY_PATH = `${WELL_KNOWN}/verify`;
/** `GET` the caller's plan, buckets, difficulty, slots and token balance. */
export const STATUS_PATH = `${WELL_KNOWN}/status`;

/** Request: a solved proof-of-work challenge (redeemed in the same round trip). */
export const SOLUTION_HEADER = "tollbooth-solution";
/** Request: an access token; response: a minted one. */
export const TOKEN_HEADER = "tollbooth-token";
/** Response: credits left on the access token or L402 credential used or minted. */
export const CREDITS_HEADER = "tollbooth-credits";
/**
 * Request: an L402 credential `<base64 macaroon>:<hex preimage>`, for origins whose own
 * OAuth uses `Authorization` (the same credential as `Authorization: L402 …`).
 */
export const L402_HEADER = "tollbooth-l402";
/** Request (standard): `Authorization: L402 <macaroon>:<preimage>` (or the old `LSAT`). */
export const AUTHORIZATION_HEADER = "authorization";
/** Response: the challenges of a 402 / 401 (RFC 9110 §11.6.1; several challenges, one per scheme). */
export const WWW_AUTHENTICATE_HEADER = "www-authenticate";
/** Response: set when a request went to the origin unmetered (`onStoreError: "open"`). */
export const DEGRADED_HEADER = "tollbooth-degraded";

/** To the origin: the caller identity. */
export const CALLER_HEADER = "tollbooth-caller";
/** To the origin: the gateway's proof, `t=<unix s>, kid=<kid>, sig=<base64url>`. */
export const PROOF_HEADER = "tollbooth-signature";
/** To the origin: SHA-256 of the forwarded body (RFC 9530), covered by the proof. */
export const DIGEST_HEADER = "content-digest";

/** Response (x402 v2 HTTP transport): base64 JSON `PaymentRequired` of a 402. */
export const PAYMENT_REQUIRED_HEADER = "payment-required";
/** Request (x402 v2): base64 JSON `PaymentPayload`. */
export const PAYMENT_SIGNATURE_HEADER = "payment-signature";
/** Request (x402 v1 name of the same, still read). */
export const X_PAYMENT_HEADER = "x-payment";
/** Response (x402 v2): base64 JSON `SettleResponse` of the settled payment. */
export const PAYMENT_RESPONSE_HEADER = "payment-response";
/** MCP `_meta` key of a payment in `tools/call` params (x402 `transports-v2/mcp.md`). */
export const X402_META_PAYMENT = "x402/payment";
/** MCP `_meta` key of the receipt in a tool result. */
export const X402_META_RESPONSE = "x402/payment-response";
