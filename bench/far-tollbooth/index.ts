/**
 * Bench only: tollbooth's gateway Worker (workers/index.ts, unchanged) with its Durable
 * Object namespaces `CALLER_BUCKET` and `ORIGIN_GATE` made "far": every call to a
 * `CallerState` or an `OriginGate` (the origin ceiling's shards, and the shards' reports to
 * its root) waits `DO_DELAY_MS` (default 25) milliseconds first, and is counted (see far.ts). `GET /__bench/do-calls` answers `{ calls }`, the Durable
 * Object calls made since the isolate started. With `DO_DELAY_MS=0` it is tollbooth as
 * is, with the calls counted. The metrics' `Stats` object is not made far (its flushes run
 * after responses, at most one per isolate per 5 s) but its calls are counted apart, and so
 * are KV reads (`TOLLBOOTH_KEYS`) and Analytics Engine data points (`TOLLBOOTH_ANALYTICS`,
 * when bound): the operations Cloudflare bills, for the bench's cost model. The wrapped
 * environment is built once per environment object (once per isolate), so the gateway sees
 * the same object on every request, as it does deployed. Run by `npm run bench:gateway`
 * with wrangler.toml here (or a copy of it with bindings removed).
 */

import type { Env } from "../../workers/env.ts";
import gateway, { CallerState as RealCallerState, OriginGate as RealOriginGate, Stats as RealStats } from "../../workers/index.ts";
import {
  benchEndpoint,
  countAlarm,
  countingAnalytics,
  countingKv,
  delayOf,
  farNamespace,
  instrumentStorage,
  originCalls,
  statsCalls,
} from "./far.ts";

// The Durable Object classes, unchanged but for counting their SQLite rows written and alarms (far.ts).
export class CallerState extends RealCallerState {
  constructor(ctx: DurableObjectState, env: unknown) {
    instrumentStorage(ctx);
    super(ctx, env);
  }
  override alarm(): Promise<void> {
    countAlarm();
    return super.alarm();
  }
}
export class OriginGate extends RealOriginGate {
  constructor(ctx: DurableObjectState, env: FarEnv) {
    instrumentStorage(ctx);
    // A shard's reports to the root are Durable Object calls too: made far and counted like the gateway's.
    super(ctx, env.ORIGIN_GATE ? { ...env, ORIGIN_GATE: farNamespace(env.ORIGIN_GATE, delayOf(env), undefined, originCalls) } : env);
  }
  override alarm(): Promise<void> {
    countAlarm();
    return super.alarm();
  }
}
export class Stats extends RealStats {
  constructor(ctx: DurableObjectState, env: unknown) {
    instrumentStorage(ctx);
    super(ctx, env);
  }
}

interface FarEnv extends Env {
  /** Milliseconds added before every Durable Object call (default 25). */
  DO_DELAY_MS?: string;
}

const farEnvs = new WeakMap<object, Env>();

/** The gateway's environment: the same bindings, the Durable Object namespaces far, the billed ones counted. */
function farEnv(env: FarEnv): Env {
  const known = farEnvs.get(env);
  if (known) return known;
  const delayMs = delayOf(env);
  const { DO_DELAY_MS: _, ...rest } = env;
  const far: Env = {
    ...rest,
    CALLER_BUCKET: farNamespace(env.CALLER_BUCKET, delayMs),
    ...(env.ORIGIN_GATE ? { ORIGIN_GATE: farNamespace(env.ORIGIN_GATE, delayMs, undefined, originCalls) } : {}),
    ...(env.TOLLBOOTH_STATS ? { TOLLBOOTH_STATS: farNamespace(env.TOLLBOOTH_STATS, 0, statsCalls) } : {}),
    ...(env.TOLLBOOTH_KEYS ? { TOLLBOOTH_KEYS: countingKv(env.TOLLBOOTH_KEYS) } : {}),
    ...(env.TOLLBOOTH_ANALYTICS ? { TOLLBOOTH_ANALYTICS: countingAnalytics(env.TOLLBOOTH_ANALYTICS) } : {}),
  };
  farEnvs.set(env, far);
  return far;
}

export default {
  fetch(request, env, ctx) {
    return benchEndpoint(request) ?? gateway.fetch!(request, farEnv(env), ctx);
  },
} satisfies ExportedHandler<FarEnv>;
