/**
 * Ending an MCP session at the origin on a caller's behalf (session eviction at the caller's
 * cap, workers/pipeline/eviction.ts): `DELETE <endpoint>` as the MCP client would send it
 * (Streamable HTTP, "Session Management": the victim's `Mcp-Session-Id`, and the
 * `Mcp-Protocol-Version` its requests carried when one was seen), with the origin proof of the
 * caller like any forwarded request (`Tollbooth-Caller`, the `Content-Digest` of the empty
 * body, `Tollbooth-Signature`), the gateway's `X-Forwarded-Host` / `-Proto`, and the caller's
 * own credential only when given (the header whose value names the caller, from the request
 * that needs the room: every session of that caller was opened with it). Bounded by `EVICTION_TIMEOUT_MS` (or the policy's `originTimeoutMs`
 * when shorter).
 */
import { CALLER_HEADER, DIGEST_HEADER, PROOF_HEADER } from "../../shared/wire/headers.ts";
import type { SessionEnder } from "../pipeline/deps.ts";
import { contentDigest, originProver } from "./origin-proof.ts";
import { originBase, type ProxyOptions } from "./proxy.ts";

/** Most milliseconds the gateway waits for the origin's answer to an eviction DELETE. */
export const EVICTION_TIMEOUT_MS = 10_000;

/**
 * The session ender of one origin (the same options as its `mcpProxy`).
 * @throws TypeError when `originUrl` is not an absolute http(s) URL
 */
export function sessionEnder(options: ProxyOptions): SessionEnder {
  const { base, prefix } = originBase(options.originUrl, "sessionEnder()");
  const prove = originProver(options.proofKey);
  const timeoutMs = Math.min(options.timeoutMs, EVICTION_TIMEOUT_MS);
  return async (req) => {
    const pathAndQuery = `${prefix}${req.path}`;
    const digest = await contentDigest(null);
    const headers = new Headers({ "mcp-session-id": req.sessionId, [DIGEST_HEADER]: digest, [CALLER_HEADER]: req.caller });
    if (req.version !== null) headers.set("mcp-protocol-version", req.version);
    for (const [name, value] of Object.entries(req.credential)) headers.set(name, value);
    headers.set("x-forwarded-host", req.url.host);
    headers.set("x-forwarded-proto", req.url.protocol.replace(":", ""));
    headers.set(PROOF_HEADER, await prove(req.caller, "DELETE", pathAndQuery, digest));
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const res = await fetch(base.origin + pathAndQuery, { method: "DELETE", headers, redirect: "manual", signal: controller.signal });
      await res.body?.cancel().catch(() => {});
      return res.status;
    } catch (err) {
      // The cause (which may name internal addresses) is logged, not sent to the caller.
      console.error(`tollbooth: eviction DELETE failed (${controller.signal.aborted ? "timeout" : "error"})`, err);
      return controller.signal.aborted ? "timeout" : "unreachable";
    } finally {
      clearTimeout(timer);
    }
  };
}
