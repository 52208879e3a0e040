/**
 * What the pipeline's unit tests share: deps built by `buildDeps` from a policy, as the
 * middleware builds them (real policy parsing, real schemes, real keyring), with a Durable
 * Object namespace that fails the test if a binding-free step asks it anything; and the
 * request state the first step sees.
 */
import { createHash } from "node:crypto";
import { buildDeps, type Deps, type TollboothOptions } from "../../../../workers/pipeline/deps.ts";
import type { Arrival } from "../../../../workers/pipeline/state.ts";
import type { PolicyInput } from "../../../../workers/schemes/policy.ts";

export const SECRET = "pipeline-unit-secret-0123456789abcdef";
export const IP = "203.0.113.7";

/** A namespace no step under test may reach: any call throws. */
const NO_STORE = {
  idFromName: (): never => {
    throw new Error("a binding-free step asked a Durable Object");
  },
  get: (): never => {
    throw new Error("a binding-free step asked a Durable Object");
  },
} as unknown as TollboothOptions["callers"];

/** The deps `tollbooth({ policy })` builds. */
export function depsFor(policy: PolicyInput = {}, options: Partial<TollboothOptions> = {}): Deps {
  return buildDeps({ policy, secret: SECRET, callers: NO_STORE, ...options });
}

/** Work a step deferred (its name and promise), in order. */
export type Deferred = Array<{ what: string; promise: Promise<unknown> }>;

/** The state a request arrives as, from `IP` (its network's caller), with its deferred work collected. */
export function arrival(request: Request, deferred: Deferred = []): Arrival {
  const url = new URL(request.url);
  return {
    ctx: { request, url, defer: (what, promise) => deferred.push({ what, promise }) },
    request,
    url,
    network: `ip:${IP}`,
    record: {},
  };
}

/** A request to the gateway at `http://gw.test`. */
export function request(method: string, path: string, init: { headers?: Record<string, string>; body?: unknown } = {}): Request {
  const headers = new Headers({ "cf-connecting-ip": IP, ...init.headers });
  let body: BodyInit | undefined;
  if (init.body !== undefined) {
    body = typeof init.body === "string" || init.body instanceof ReadableStream ? (init.body as BodyInit) : JSON.stringify(init.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  return new Request(`http://gw.test${path}`, {
    method,
    headers,
    body,
    ...(init.body instanceof ReadableStream ? { duplex: "half" } : {}),
  } as RequestInit);
}

/** A JSON-RPC `tools/call` of `name`. */
export const toolCall = (id: number, name = "echo") => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name, arguments: { message: "hi" } },
});

/** The smallest decimal nonce whose SHA-256(salt ‖ nonce) has `difficulty` leading zero bits (node:crypto, independent of shared/). */
export function solve(salt: string, difficulty: number): string {
  for (let n = 0; ; n++) {
    const digest = createHash("sha256")
      .update(salt + String(n), "utf8")
      .digest();
    let bits = 0;
    for (const byte of digest) {
      if (byte === 0) {
        bits += 8;
        continue;
      }
      bits += Math.clz32(byte) - 24;
      break;
    }
    if (bits >= difficulty) return String(n);
  }
}
