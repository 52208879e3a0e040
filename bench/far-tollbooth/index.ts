/**
 * Bench only: tollbooth's gateway Worker (workers/index.ts, unchanged) with its Durable
 * Object namespaces `CALLER_BUCKET` and `ORIGIN_GATE` made "far": every call to a
 * `CallerState` or the `OriginGate` waits `DO_DELAY_MS` (default 25) milliseconds first,
 * and is counted (see far.ts). `GET /__bench/do-calls` answers `{ calls }`, the Durable
 * Object calls made since the isolate started. With `DO_DELAY_MS=0` it is tollbooth as
 * is, with the calls counted. The metrics' `Stats` object is bound as deployed, not made far
 * (its flushes run after responses, at most one per isolate per 5 s). Run by
 * `npm run bench:gateway` with wrangler.toml here.
 */
import gateway, { CallerState, OriginGate, Stats } from "../../workers/index.ts";
import type { Env } from "../../workers/env.ts";
import { benchEndpoint, delayOf, farNamespace } from "./far.ts";

export { CallerState, OriginGate, Stats };

interface FarEnv extends Env {
  /** Milliseconds added before every Durable Object call (default 25). */
  DO_DELAY_MS?: string;
}

/** The gateway's environment: the same bindings, the Durable Object namespaces far. */
function farEnv(env: FarEnv): Env {
  const delayMs = delayOf(env);
  const { DO_DELAY_MS: _, ...rest } = env;
  return {
    ...rest,
    CALLER_BUCKET: farNamespace(env.CALLER_BUCKET, delayMs),
    ...(env.ORIGIN_GATE ? { ORIGIN_GATE: farNamespace(env.ORIGIN_GATE, delayMs) } : {}),
  };
}

export default {
  fetch(request, env, ctx) {
    return benchEndpoint(request) ?? gateway.fetch!(request, farEnv(env), ctx);
  },
} satisfies ExportedHandler<FarEnv>;
