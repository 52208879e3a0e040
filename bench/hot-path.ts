/**
 * tollbooth's per-request work without any I/O, measured in-process in Node: what the
 * gateway computes for one in-budget `tools/call` besides reading the body, calling the
 * caller's Durable Object and fetching the origin.
 *
 * Stages (each timed on its own, then the whole middleware):
 * - `identity`: shared/identity/index.ts `identityResolver` for an issued API key listed in the
 *   policy (SHA-256 of the key, memoized per isolate, and the lookup);
 * - `media type + parse + cost`: workers/pipeline/read-body.ts `jsonRequestProblem` (UTF-8 JSON only),
 *   shared/jsonrpc.ts `parseBody` (its nesting pre-scan included) + `bodyCost`;
 * - `token verify`: shared/credentials/token.ts `tokenVerifier`, as the middleware uses it: the token's
 *   HMAC is verified on its first use in an isolate and remembered until `exp`, then each
 *   request checks expiry and caller (only requests that carry a `Tollbooth-Token` pay it;
 *   `ref: token HMAC verify` is the first use);
 * - `admit decision`: shared/limits/bucket.ts `take` on the ceiling and the free bucket, as
 *   `CallerState.admit` does (without its SQLite reads and writes);
 * - `rate-limit headers`: shared/limits/ratelimit-headers.ts `rateLimitPolicy` + `rateLimit`;
 * - `origin proof`: workers/proxy/proxy.ts `forwardHeaders`, workers/proxy/origin-proof.ts `contentDigest` (SHA-256 of the
 *   body) and `proofBytes` + HMAC-SHA256 sign + base64url (v2, covering the digest);
 * - `middleware`: the real `tollbooth()` Hono middleware end to end (URL, Origin check,
 *   body read, path normalisation, parse, cost, identity, the admit call, headers) in a
 *   Hono app whose Durable Object namespace is an in-memory map running the same bucket
 *   math, and whose next handler answers 200 at once.
 * - `ref: one WebCrypto call`: a SHA-256 of one byte, the fixed cost of any WebCrypto call
 *   here (not part of the path; shows how much of the crypto stages is the call itself);
 * - `ref: read the body`: workers/pipeline/read-body.ts `readBody` on a Node `Request` (I/O in workerd,
 *   where the body arrives from the network; included in the whole-middleware figure).
 * The hot path is the sum of the non-reference stages; the whole middleware (timed
 * without building its `Request`) adds Hono, the URL, the body read and the awaits.
 * Each: mean and p99 in µs over `iterations` runs after `warmup` runs.
 *
 * Node's WebCrypto runs `digest`/`sign`/`verify` on the libuv thread pool, so the
 * crypto stages include a thread hop that workerd (which answers them on the calling
 * thread) does not pay, and the whole middleware can measure less than one of its stages
 * (the hops overlap): a per-stage profile, not the CPU Cloudflare bills. That figure —
 * workerd's CPU per request — is `npm run bench:gateway`'s (and CI's budget,
 * scripts/ci-budgets.ts); no target applies here.
 */
import { Hono } from "hono";
import { hmac, importKeyring } from "../shared/credentials/keys.ts";
import { newTokenId, signToken, tokenVerifier, verifyToken } from "../shared/credentials/token.ts";
import { identityResolver } from "../shared/identity/index.ts";
import { bodyCost, isBodyError, parseBody } from "../shared/jsonrpc.ts";
import { type BucketState, take } from "../shared/limits/bucket.ts";
import { type NamedLimit, rateLimit, rateLimitPolicy } from "../shared/limits/ratelimit-headers.ts";
import { toBase64Url } from "../shared/wire/encoding.ts";
import type { AdmitRequest, AdmitResult, CallerState } from "../workers/objects/caller-state.ts";
import { type TollboothVariables, tollbooth } from "../workers/pipeline/middleware.ts";
import { jsonRequestProblem, readBody } from "../workers/pipeline/read-body.ts";
import { contentDigest, proofBytes } from "../workers/proxy/origin-proof.ts";
import { forwardHeaders } from "../workers/proxy/proxy.ts";
import { type PolicyInput, parsePolicy } from "../workers/schemes/policy.ts";

/** Timing of one stage, in microseconds per request. */
export interface StageTiming {
  name: string;
  meanUs: number;
  p99Us: number;
}

/** The result of {@link measureHotPath}. */
export interface HotPath {
  iterations: number;
  stages: StageTiming[];
  /** The whole `tollbooth()` middleware for one in-budget request (no Durable Object, no origin). */
  middleware: StageTiming;
  /**
   * The hot path: the sum of the mean µs of the stages that are not references (identity,
   * parse + cost, token verify, admit decision, rate-limit headers, origin proof).
   */
  hotPathUs: number;
}

const SECRET = "bench-secret-0123456789abcdef0123";
const API_KEY = "bench-caller-key-0001";
/** SHA-256 hex of API_KEY: the key is issued (listed in the policy), so the caller is verified. */
const API_KEY_SHA256 = Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(API_KEY))).toString("hex");
const POLICY: PolicyInput = {
  bucket: { capacity: 1_000_000, refillPerSecond: 100_000 },
  ceiling: { capacity: 1_000_000, refillPerSecond: 100_000 },
  identity: { apiKeys: [{ sha256: API_KEY_SHA256, name: "bench" }] },
};
const BODY = new TextEncoder().encode(
  JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "echo", arguments: { message: "hello" } } }),
);
const HEADERS: Record<string, string> = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
  "x-api-key": API_KEY,
  "mcp-session-id": "0f9c7d6e-5b4a-4c3d-8e2f-1a0b9c8d7e6f",
  "mcp-protocol-version": "2025-11-25",
  host: "127.0.0.1:8787",
};

/**
 * Time `fn` `iterations` times after `warmup` runs; `prepare` (untimed) makes its argument.
 * @returns mean and p99 in µs
 */
async function time<T>(
  name: string,
  fn: (arg: T) => unknown | Promise<unknown>,
  iterations: number,
  warmup: number,
  prepare: () => T = () => undefined as T,
): Promise<StageTiming> {
  for (let i = 0; i < warmup; i++) await fn(prepare());
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const arg = prepare();
    const t0 = performance.now();
    await fn(arg);
    samples[i] = performance.now() - t0;
  }
  samples.sort();
  const mean = samples.reduce((a, b) => a + b, 0) / iterations;
  return { name, meanUs: mean * 1000, p99Us: samples[Math.floor(iterations * 0.99)]! * 1000 };
}

/**
 * A stand-in for the `CallerState` namespace that decides in memory with the same bucket
 * math as `CallerState.admit` for requests without credentials (ceiling, then free bucket).
 */
function memoryCallers(): DurableObjectNamespace<CallerState> {
  const state = new Map<string, { ceiling?: BucketState; free?: BucketState }>();
  const admit = (caller: string, r: AdmitRequest): AdmitResult => {
    const s = state.get(caller) ?? {};
    state.set(caller, s);
    const ceiling = take(s.ceiling ?? { tokens: r.ceiling.capacity, updatedMs: r.nowMs }, r.ceiling, 1, r.nowMs);
    const free = take(s.free ?? { tokens: r.bucket.capacity, updatedMs: r.nowMs }, r.bucket, r.cost, r.nowMs);
    s.ceiling = ceiling.state;
    s.free = free.state;
    return { admitted: free.result.success, paidBy: "bucket", bucket: free.result, ceiling: ceiling.result };
  };
  return {
    idFromName: (name: string) => name,
    get: (id: string) => ({ admit: async (r: AdmitRequest) => admit(id, r) }),
  } as unknown as DurableObjectNamespace<CallerState>;
}

/**
 * Measure the hot path.
 * @param iterations timed runs per stage (≥ 10 000 for a stable p99)
 * @param warmup untimed runs before them
 */
export async function measureHotPath(iterations = 20_000, warmup = 2_000): Promise<HotPath> {
  const policy = parsePolicy(POLICY);
  const keyring = await importKeyring(SECRET);
  const headers = new Headers(HEADERS);
  const nowMs = Date.now();
  const identify = identityResolver(policy.identity);
  const identity = await identify(headers);
  if (!identity.verified) throw new Error(`the bench key is not an issued key: ${identity.id}`);
  const caller = identity.id;
  const token = await signToken(keyring, { sub: caller, jti: newTokenId(), exp: Math.floor(nowMs / 1000) + 3600, cr: 20 });
  let ceilingState: BucketState = { tokens: policy.ceiling.capacity, updatedMs: nowMs };
  let freeState: BucketState = { tokens: policy.bucket.capacity, updatedMs: nowMs };
  const decision = take(freeState, policy.bucket, 1, nowMs).result;

  const url = new URL("http://127.0.0.1:8787/mcp");
  const stages: StageTiming[] = [];
  const oneByte = new Uint8Array(1);
  stages.push(await time("ref: one WebCrypto call (1 B SHA-256)", () => crypto.subtle.digest("SHA-256", oneByte), iterations, warmup));
  stages.push(await time("identity (issued API key)", () => identify(headers), iterations, warmup));
  stages.push(
    await time(
      "media type + parse + cost",
      () => {
        if (jsonRequestProblem(headers) !== null) throw new Error("refused media type");
        const parsed = parseBody(BODY, policy.maxJsonDepth);
        if (isBodyError(parsed)) throw new Error(parsed.message);
        return bodyCost(policy, parsed);
      },
      iterations,
      warmup,
    ),
  );
  stages.push(
    await time(
      "ref: token HMAC verify (first use)",
      async () => {
        const check = await verifyToken(keyring, token, caller, nowMs);
        if (!check.ok) throw new Error(check.reason);
      },
      iterations,
      warmup,
    ),
  );
  const verifier = tokenVerifier(keyring);
  stages.push(
    await time(
      "token verify (remembered per isolate)",
      async () => {
        const check = await verifier(token, caller, nowMs);
        if (!check.ok) throw new Error(check.reason);
      },
      iterations,
      warmup,
    ),
  );
  stages.push(
    await time(
      "admit decision (2 × take)",
      () => {
        const now = Date.now();
        const c = take(ceilingState, policy.ceiling, 1, now);
        const f = take(freeState, policy.bucket, 1, now);
        ceilingState = c.state;
        freeState = f.state;
        return f.result.success;
      },
      iterations,
      warmup,
    ),
  );
  stages.push(
    await time(
      "rate-limit headers",
      () => {
        const limits: NamedLimit[] = [
          { name: "free", config: policy.bucket, result: decision },
          { name: "ceiling", config: policy.ceiling, result: decision },
        ];
        return rateLimitPolicy(limits) + rateLimit(limits, nowMs);
      },
      iterations,
      warmup,
    ),
  );
  stages.push(
    await time(
      "origin proof (headers + digest + HMAC)",
      async () => {
        const forwarded = forwardHeaders(headers, url);
        const digest = await contentDigest(BODY);
        forwarded.set("content-digest", digest);
        const t = Math.floor(Date.now() / 1000);
        const sig = await hmac(keyring.signer, proofBytes(t, caller, "POST", "/mcp", digest));
        forwarded.set("tollbooth-signature", `t=${t}, kid=${keyring.signer.kid}, sig=${toBase64Url(sig)}`);
        return forwarded;
      },
      iterations,
      warmup,
    ),
  );

  const app = new Hono<{ Variables: TollboothVariables }>();
  app.use(tollbooth({ policy: POLICY, secret: SECRET, callers: memoryCallers() }));
  app.all("*", (c) => c.text("ok"));
  const request = () => new Request("http://127.0.0.1:8787/mcp", { method: "POST", headers: HEADERS, body: BODY });
  const middleware = await time(
    "whole middleware (Node)",
    async (req: Request) => {
      const res = await app.fetch(req);
      if (res.status !== 200) throw new Error(`middleware answered ${res.status}: ${await res.text()}`);
    },
    iterations,
    warmup,
    request,
  );
  const bodyRead = await time("ref: read the body (Node stream)", (req: Request) => readBody(req, 1 << 20), iterations, warmup, request);
  const hotPathUs = stages.filter((s) => !s.name.startsWith("ref:")).reduce((a, s) => a + s.meanUs, 0);
  return { iterations, stages: [...stages, bodyRead], middleware, hotPathUs };
}

if (import.meta.main) {
  const r = await measureHotPath();
  console.log(`hot path, in-process (Node ${process.version}), ${r.iterations} iterations per stage, µs per request`);
  for (const s of [...r.stages, r.middleware])
    console.log(`${s.name.padEnd(38)} mean ${s.meanUs.toFixed(1).padStart(7)}  p99 ${s.p99Us.toFixed(1).padStart(7)}`);
  console.log(`hot path (sum of the non-reference stages)  ${r.hotPathUs.toFixed(1)} µs`);
}
