/**
 * Benchmark baseline: what a user would otherwise write — a pass-through Worker in front of
 * ORIGIN_URL with the rate limiter of Cloudflare's Durable Objects example "Build a rate
 * limiter" (developers.cloudflare.com/durable-objects/examples/build-a-rate-limiter/):
 * one `RateLimiter` object per caller (`idFromName(<x-api-key or CF-Connecting-IP>)`), a
 * token bucket held in memory and refilled by an alarm, and one RPC call per request
 * (`getMillisecondsToNextRequest()`: 0 = go ahead, otherwise 429). The bucket is large
 * enough that the benchmark never hits it, so every request is forwarded, as through
 * tollbooth with a generous policy.
 */
import { DurableObject } from "cloudflare:workers";

interface Env {
  ORIGIN_URL: string;
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>;
}

/** Token bucket per caller, as in the Cloudflare example: in memory, refilled by an alarm. */
export class RateLimiter extends DurableObject<Env> {
  /** Milliseconds one request "costs" in the example's units. */
  static readonly millisecondsPerRequest = 1;
  /** Refill period of the alarm, milliseconds. */
  static readonly millisecondsForUpdates = 5_000;
  /** Bucket size (units): generous, the benchmark stays in budget. */
  static readonly capacity = 1_000_000;

  private tokens = RateLimiter.capacity;

  /**
   * Take one token.
   * @returns 0 when the request may go ahead, else milliseconds until the next one may
   */
  async getMillisecondsToNextRequest(): Promise<number> {
    await this.checkAndSetAlarm();
    if (this.tokens > 0) {
      this.tokens -= 1;
      return 0;
    }
    return RateLimiter.millisecondsPerRequest;
  }

  private async checkAndSetAlarm(): Promise<void> {
    const currentAlarm = await this.ctx.storage.getAlarm();
    if (currentAlarm === null) {
      await this.ctx.storage.setAlarm(Date.now() + RateLimiter.millisecondsForUpdates * RateLimiter.millisecondsPerRequest);
    }
  }

  /** Refill, and keep the alarm going while the bucket is not full. */
  override async alarm(): Promise<void> {
    if (this.tokens < RateLimiter.capacity) {
      this.tokens = Math.min(RateLimiter.capacity, this.tokens + RateLimiter.millisecondsForUpdates);
      await this.checkAndSetAlarm();
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/.well-known/tollbooth") return Response.json({ doLimiter: true }); // readiness probe
    const caller = request.headers.get("x-api-key") ?? request.headers.get("cf-connecting-ip");
    if (caller === null) return new Response("Could not determine the caller", { status: 400 });
    try {
      const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(caller));
      if ((await stub.getMillisecondsToNextRequest()) > 0) return new Response("Rate limit exceeded", { status: 429 });
    } catch {
      return new Response("Could not connect to rate limiter", { status: 502 });
    }
    const headers = new Headers(request.headers);
    headers.delete("host");
    const body = request.method === "GET" || request.method === "HEAD" ? null : await request.arrayBuffer();
    const upstream = await fetch(env.ORIGIN_URL + url.pathname + url.search, { method: request.method, headers, body, redirect: "manual" });
    return new Response(upstream.body, upstream);
  },
} satisfies ExportedHandler<Env>;
