/**
 * Bench only: the DO-limiter baseline (bench/do-limiter-worker, unchanged) with its
 * `RATE_LIMITER` namespace made "far": every call to a `RateLimiter` waits `DO_DELAY_MS`
 * (default 25) milliseconds first, and is counted (see bench/far-tollbooth/far.ts).
 * `GET /__bench/do-calls` answers `{ calls }` since the isolate started. With
 * `DO_DELAY_MS=0` it is the baseline as is, with the calls counted.
 */
import limiter, { RateLimiter } from "../do-limiter-worker/index.ts";
import { benchEndpoint, delayOf, farNamespace } from "../far-tollbooth/far.ts";

export { RateLimiter };

interface Env {
  ORIGIN_URL: string;
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>;
  /** Milliseconds added before every Durable Object call (default 25). */
  DO_DELAY_MS?: string;
}

export default {
  fetch(request, env) {
    const { DO_DELAY_MS: _, ...rest } = env;
    return benchEndpoint(request) ?? limiter.fetch(request, { ...rest, RATE_LIMITER: farNamespace(env.RATE_LIMITER, delayOf(env)) });
  },
} satisfies ExportedHandler<Env>;
