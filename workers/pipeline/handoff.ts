/**
 * What the decision hands to the proxy (workers/proxy/proxy.ts, `c.var.tollbooth`) for a request it
 * admitted: who it is, what to forward, and the hooks through which the proxy gives back
 * what the request holds (`giveBack`) when the origin never answered or a stream ends.
 */
import type { ParsedBody } from "../../shared/jsonrpc.ts";
import type { AdmitResult } from "../objects/caller-state.ts";
import type { Deps } from "./deps.ts";
import { giveBack, heldBy } from "./give-back.ts";
import type { Cleared } from "./state.ts";

/** What the middleware hands to the proxy for an admitted request. */
export interface TollboothState {
  /** Caller identity (see shared/identity/index.ts): the `Identity.id`. */
  caller: string;
  /** Parsed JSON-RPC body on the MCP endpoint, else null. */
  body: ParsedBody | null;
  /** Raw request body, already read (null when there was none). */
  rawBody: Uint8Array<ArrayBuffer> | null;
  /** Units charged. */
  cost: number;
  /** The Durable Object's decision; null when it was unavailable and the request went on unmetered (`onStoreError: "open"`). */
  decision: AdmitResult | null;
  /**
   * Called by the proxy, at most once, when the origin never answered (502 unreachable,
   * 504 no response headers in time): the request's charge is given back.
   */
  refund?: () => void;
  /**
   * For a GET SSE stream counted against the caller's stream cap: called by the proxy, at
   * most once, when the response stream ends, errors, is cancelled by the client, or is
   * cut at `streamMaxMs`; also when the origin never answered or answered without a stream.
   */
  release?: () => void;
  /** Milliseconds after which the proxy ends a GET SSE stream (the client resumes with `Last-Event-ID`). */
  streamMaxMs?: number;
  /** Remove tollbooth's credentials (every scheme's) from headers about to be forwarded. */
  strip?: (headers: Headers) => void;
  /** Called by the proxy, once: the origin's response status, or why it never answered (its own 502 / 504). For the decision record. */
  origin?: (outcome: number | "unreachable" | "timeout") => void;
}

/** Hono variables set by `tollbooth()`. */
export interface TollboothVariables {
  tollbooth: TollboothState;
}

/** The proxy's state for an admitted request, and whether its charge was given back (the after-origin step asks). */
export function handoff(s: Cleared, deps: Pick<Deps, "leases" | "strip">): { state: TollboothState; refunded: () => boolean } {
  let refunded = false;
  const state: TollboothState = {
    caller: s.caller,
    body: s.body,
    rawBody: s.credential.forwardBody,
    cost: s.cost,
    decision: s.decision,
    strip: deps.strip,
    refund: () => {
      if (refunded) return;
      refunded = true;
      void giveBack(heldBy(s, deps, "charge"), s.ctx.defer);
    },
  };
  if (s.slot?.kind === "stream") {
    let released = false;
    state.release = () => {
      if (released || refunded) return;
      released = true;
      void giveBack(heldBy(s, deps, "slot"), s.ctx.defer);
    };
    state.streamMaxMs = s.plan.limits.streamMaxSeconds * 1000;
  }
  return { state, refunded: () => refunded };
}
