/**
 * Bench only: the DO-limiter baseline (bench/do-limiter-worker, unchanged) with its
 * `RATE_LIMITER` namespace made "far": every call to a `RateLimiter` waits `DO_DELAY_MS`
 * (default 25) milliseconds first, and is counted (see bench/far-tollbooth/far.ts).
 * `GET /__bench/do-calls` answers the counts since the isolate started (far.ts
 * `BenchCounts`: the calls, and the object's storage writes and alarms). With
 * `DO_DELAY_MS=0` it is the baseline as is, with the calls counted.
 */
import limiter, { RateLimiter as RealRateLimiter } from "../do-limiter-worker/index.ts";
import { benchEndpoint, countAlarm, delayOf, farNamespace, instrumentStorage } from "../far-tollbooth/far.ts";

/** The example's `RateLimiter`, unchanged but for counting its storage writes (`setAlarm`) and alarms. */
export class RateLimiter extends RealRateLimiter {
  constructor(ctx: DurableObjectState, env: Env) {
    instrumentStorage(ctx);
    super(ctx, env);
  }
  override alarm(): Promise<void> {
    countAlarm();
    return super.alarm();
  }
}

interface Env {
  ORIGIN_URL: string;
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>;
  /** Milliseconds added before every Durable Object call (default 25). */
  DO_DELAY_MS?: string;
}

const farEnvs = new WeakMap<object, Omit<Env, "DO_DELAY_MS">>();

/** The limiter's environment with `RATE_LIMITER` far, built once per environment object (once per isolate). */
function farEnv(env: Env): Omit<Env, "DO_DELAY_MS"> {
  let far = farEnvs.get(env);
  if (!far) {
    const { DO_DELAY_MS: _, ...rest } = env;
    far = { ...rest, RATE_LIMITER: farNamespace(env.RATE_LIMITER, delayOf(env)) };
    farEnvs.set(env, far);
  }
  return far;
}

export default {
  fetch(request, env) {
    return benchEndpoint(request) ?? limiter.fetch(request, farEnv(env));
  },
} satisfies ExportedHandler<Env>;
