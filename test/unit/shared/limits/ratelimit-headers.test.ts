/**
 * `RateLimit-Policy` and `RateLimit` (shared/limits/ratelimit-headers.ts,
 * draft-ietf-httpapi-ratelimit-headers-10): valid Structured Field lists for every bucket
 * state, with `q`/`w` the capacity and the seconds to fill, `r`/`t` the whole units left and
 * the whole seconds until the request fits, never negative.
 */
import { describe, expect, it } from "vitest";
import { type BucketConfig, fullBucket, take } from "../../../../shared/limits/bucket.ts";
import { type NamedLimit, rateLimit, rateLimitPolicy } from "../../../../shared/limits/ratelimit-headers.ts";

const T0 = 1_700_000_000_000;

/**
 * Minimal RFC 9651 List parser for what draft-ietf-httpapi-ratelimit-headers-10 allows here:
 * members are sf-strings with parameters whose values are sf-integers.
 * Returns null when the text is not such a list.
 */
function parseSfList(text: string): Array<{ item: string; params: Record<string, number> }> | null {
  const member = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"((?:;[a-z*][a-z0-9_.*-]*=-?[0-9]{1,15})*)$/;
  const out: Array<{ item: string; params: Record<string, number> }> = [];
  for (const part of text.split(/,[ \t]*/)) {
    const m = member.exec(part);
    if (!m) return null;
    const params: Record<string, number> = {};
    for (const p of m[2]!.split(";").slice(1)) {
      const [k, v] = p.split("=") as [string, string];
      if (k in params) return null;
      params[k] = Number(v);
    }
    out.push({ item: m[1]!.replace(/\\(["\\])/g, "$1"), params });
  }
  return out;
}

describe("rateLimitPolicy (RateLimit-Policy field)", () => {
  it('writes the draft\'s example shape: "free";q=10;w=20', () => {
    expect(rateLimitPolicy([{ name: "free", config: { capacity: 10, refillPerSecond: 0.5 } }])).toBe('"free";q=10;w=20');
  });

  it("sets q to the capacity and w to the seconds an empty bucket takes to fill, rounded up", () => {
    const configs: BucketConfig[] = [
      { capacity: 10, refillPerSecond: 3 },
      { capacity: 60, refillPerSecond: 10 },
      { capacity: 1, refillPerSecond: 0.3 },
      { capacity: 7, refillPerSecond: 7 },
      { capacity: 5, refillPerSecond: 100 },
    ];
    for (const config of configs) {
      const parsed = parseSfList(rateLimitPolicy([{ name: "free", config }]));
      expect(parsed).not.toBeNull();
      const { q, w } = parsed![0]!.params;
      expect(q).toBe(config.capacity);
      // w is the smallest whole number of seconds in which the bucket refills completely.
      expect(w! * config.refillPerSecond).toBeGreaterThanOrEqual(config.capacity - 1e-9);
      expect((w! - 1) * config.refillPerSecond).toBeLessThan(config.capacity);
      expect(w).toBeGreaterThanOrEqual(1);
    }
  });

  it("lists several buckets as one Structured Field list, in order", () => {
    const value = rateLimitPolicy([
      { name: "free", config: { capacity: 10, refillPerSecond: 0.5 } },
      { name: "ceiling", config: { capacity: 60, refillPerSecond: 10 } },
    ]);
    expect(value).toBe('"free";q=10;w=20, "ceiling";q=60;w=6');
    expect(parseSfList(value)?.map((m) => m.item)).toEqual(["free", "ceiling"]);
  });

  it("lists buckets whether or not they have a result", () => {
    const result = take(fullBucket({ capacity: 10, refillPerSecond: 1 }, T0), { capacity: 10, refillPerSecond: 1 }, 1, T0).result;
    expect(rateLimitPolicy([{ name: "a", config: { capacity: 10, refillPerSecond: 1 }, result }])).toBe('"a";q=10;w=10');
  });
});

describe("rateLimit (RateLimit field)", () => {
  const free: BucketConfig = { capacity: 10, refillPerSecond: 0.5 };

  it('writes the draft\'s example shape: "free";r=3;t=14', () => {
    // A full bucket of 10 at 0.5/s, 7 taken: 3 left, full again after 14 s.
    const { result } = take(fullBucket(free, T0), free, 7, T0);
    expect(rateLimit([{ name: "free", config: free, result }], T0)).toBe('"free";r=3;t=14');
  });

  it("says r=<capacity>;t=0 for a full bucket", () => {
    const { result } = take(fullBucket(free, T0), free, 0, T0);
    expect(rateLimit([{ name: "free", config: free, result }], T0)).toBe('"free";r=10;t=0');
  });

  it("rounds a fractional wait up to whole seconds", () => {
    // 3 taken at 0.3/s: 10 s; one more taken a moment later at the same rate: about 13.33 s → 14.
    const cfg: BucketConfig = { capacity: 5, refillPerSecond: 0.3 };
    const first = take(fullBucket(cfg, T0), cfg, 3, T0);
    const second = take(first.state, cfg, 1, T0);
    const parsed = parseSfList(rateLimit([{ name: "x", config: cfg, result: second.result }], T0));
    expect(parsed?.[0]?.params).toEqual({ r: 1, t: 14 });
  });

  it("measures t from nowMs and never goes below zero", () => {
    const { result } = take(fullBucket(free, T0), free, 7, T0);
    expect(parseSfList(rateLimit([{ name: "free", config: free, result }], T0 + 4000))?.[0]?.params.t).toBe(10);
    expect(parseSfList(rateLimit([{ name: "free", config: free, result }], T0 + 60_000))?.[0]?.params.t).toBe(0);
  });

  it("never reports negative remaining units", () => {
    const result = { success: false, limit: 10, remaining: -2, reset: T0, retryAfterSeconds: 1 };
    expect(parseSfList(rateLimit([{ name: "free", config: free, result }], T0))?.[0]?.params.r).toBe(0);
  });

  it("only lists buckets that have a result", () => {
    const { result } = take(fullBucket(free, T0), free, 1, T0);
    const limits: NamedLimit[] = [
      { name: "free", config: free },
      { name: "ceiling", config: { capacity: 60, refillPerSecond: 10 }, result },
    ];
    expect(parseSfList(rateLimit(limits, T0))?.map((m) => m.item)).toEqual(["ceiling"]);
    expect(rateLimit([{ name: "free", config: free }], T0)).toBe("");
  });

  it("stays a valid Structured Field list for every state of a simulated bucket", () => {
    const cfgs: BucketConfig[] = [free, { capacity: 60, refillPerSecond: 10 }, { capacity: 3, refillPerSecond: 1 / 3 }];
    for (const cfg of cfgs) {
      let state = fullBucket(cfg, T0);
      for (let i = 0; i < 100; i++) {
        const now = T0 + i * 337;
        const step = take(state, cfg, 1, now);
        state = step.state;
        const value = rateLimit([{ name: "free", config: cfg, result: step.result }], now);
        const parsed = parseSfList(value);
        expect(parsed, value).not.toBeNull();
        const { r, t } = parsed![0]!.params;
        expect(Number.isInteger(r) && r! >= 0 && r! <= cfg.capacity, value).toBe(true);
        expect(Number.isInteger(t) && t! >= 0, value).toBe(true);
      }
    }
  });
});
