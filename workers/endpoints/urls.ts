/** Where tollbooth's own endpoints are, as absolute URLs for a request (a 402's `error.data`, the policy, `/verify`'s answers). */
import { WELL_KNOWN } from "../../shared/wire/headers.ts";

/** The gateway's own URLs, absolute, for a request URL (a route's prefix is put back by the router). */
export function gatewayUrls(requestUrl: URL): { policyUrl: string; challengeUrl: string; verifyUrl: string; statusUrl: string } {
  const base = requestUrl.origin + WELL_KNOWN;
  return { policyUrl: base, challengeUrl: `${base}/challenge`, verifyUrl: `${base}/verify`, statusUrl: `${base}/status` };
}
