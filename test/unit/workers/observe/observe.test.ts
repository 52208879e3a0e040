/**
 * The decision log's sampling (workers/observe/observe.ts): which records are always kept,
 * the per-isolate sampler of plain admitted requests (rate, first line, no locking onto one
 * caller of a periodic pattern) and the var that sets it.
 */
import { describe, expect, it } from "vitest";
import {
  admittedSampler,
  DEFAULT_DECISION_LOG_SAMPLE,
  keptWhole,
  observe,
  parseDecisionLogSample,
} from "../../../../workers/observe/observe.ts";
import type { DecisionRecord } from "../../../../workers/observe/types.ts";

/** A deterministic uniform [0, 1) source (a 32-bit LCG). */
function lcg(seed = 1): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

const admitted: DecisionRecord = {
  time: 0,
  caller: "ip:198.51.100.0/24",
  network: "198.51.100.0/24",
  plan: "free",
  method: "POST",
  cost: 1,
  decision: "admitted",
  reason: "bucket",
  status: 200,
  originStatus: 200,
  latencyMs: 3,
};

describe("keptWhole: what is never sampled", () => {
  it("refusals, errors, payments, solves, unmetered and own-endpoint answers; not a plain admitted request", () => {
    expect(keptWhole(admitted)).toBe(false);
    expect(keptWhole({ ...admitted, originStatus: 404, status: 404 })).toBe(false);
    for (const r of [
      { ...admitted, decision: "payment_required" as const, status: 402 },
      { ...admitted, decision: "rate_limited" as const, status: 429 },
      { ...admitted, decision: "bad_request" as const, status: 400 },
      { ...admitted, decision: "blocked" as const, status: 403 },
      { ...admitted, decision: "unavailable" as const, status: 503 },
      { ...admitted, decision: "admitted_unmetered" as const },
      { ...admitted, decision: "own_endpoint" as const },
      { ...admitted, redeemed: true, reason: "solution" },
      { ...admitted, paid: { scheme: "l402", amount: "10", unit: "sats" as const } },
      { ...admitted, originStatus: 500, status: 500 },
      { ...admitted, originError: "timeout" as const, originStatus: undefined, status: 504 },
    ])
      expect(keptWhole(r), JSON.stringify(r)).toBe(true);
  });
});

describe("admittedSampler", () => {
  it("says yes first at the N-th call, then at a mean gap of N (within 3 % over 200,000 calls)", () => {
    const next = admittedSampler(100, lcg(7));
    const first = Array.from({ length: 100 }, () => next());
    expect(first.indexOf(true)).toBe(99);
    let yes = 1;
    for (let i = 0; i < 200_000; i++) if (next()) yes++;
    expect(yes / 2001).toBeGreaterThan(0.97);
    expect(yes / 2001).toBeLessThan(1.03);
  });

  it("1 says yes every time", () => {
    const next = admittedSampler(1, lcg());
    expect(Array.from({ length: 50 }, () => next()).every(Boolean)).toBe(true);
  });

  it("16 callers in turn are each sampled (a fixed period of 100 would sample 4 of them only)", () => {
    const next = admittedSampler(100, lcg(3));
    const seen = new Set<number>();
    for (let i = 0; i < 16 * 1000; i++) if (next()) seen.add(i % 16);
    expect(seen.size).toBe(16);
  });
});

describe("the sampling through observe().emit", () => {
  it("writes one plain admitted line in N (marked sampleInterval N) and every refusal", () => {
    const lines: string[] = [];
    const o = observe({ log: (l) => lines.push(l), logSample: 4, random: () => 0.5 });
    for (let i = 0; i < 4; i++) o.emit({ ...admitted }, null);
    o.emit({ ...admitted, decision: "payment_required", status: 402 }, null);
    const records = lines.map((l) => JSON.parse(l) as DecisionRecord);
    expect(records.map((r) => [r.decision, r.sampleInterval])).toEqual([
      ["admitted", 4],
      ["payment_required", undefined],
    ]);
  });

  it("refuses a bad logSample at once", () => {
    expect(() => observe({ logSample: 0 })).toThrow(/logSample/);
    expect(() => observe({ logSample: 2.5 })).toThrow(/logSample/);
  });
});

describe("parseDecisionLogSample (TOLLBOOTH_DECISION_LOG_SAMPLE)", () => {
  it("unset or blank: the default, 100; an integer 1–1000000 as given; anything else names the var", () => {
    expect(DEFAULT_DECISION_LOG_SAMPLE).toBe(100);
    expect(parseDecisionLogSample(undefined)).toBe(100);
    expect(parseDecisionLogSample(" ")).toBe(100);
    expect(parseDecisionLogSample("1")).toBe(1);
    expect(parseDecisionLogSample(" 250 ")).toBe(250);
    expect(parseDecisionLogSample("1000000")).toBe(1_000_000);
    for (const bad of ["0", "-1", "0.01", "1e2", "1/100", "ten", "1000001"])
      expect(() => parseDecisionLogSample(bad), bad).toThrow(/^TOLLBOOTH_DECISION_LOG_SAMPLE must be an integer from 1/);
  });
});
