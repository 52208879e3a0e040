/**
 * The metrics' pure parts (workers/observe/): the Prometheus text (format 0.0.4), what one
 * decision record counts, the caller shortening, percentiles, bounded batches, and the
 * isolate's flusher (one flush per interval; a failed batch kept for the next, bounded).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  addRecord,
  type BatchMinute,
  countersOf,
  emptyBatch,
  LATENCY_SUM_KEY,
  MAX_CALLERS_PER_MINUTE,
  MAX_RECENT,
  mergeBatch,
  percentiles,
  type StatsBatch,
  shortCaller,
} from "../../../../workers/observe/counters.ts";
import { parseFlushMs, statsFlusher } from "../../../../workers/observe/flusher.ts";
import { prometheusText } from "../../../../workers/observe/prometheus.ts";
import { type DecisionRecord, LATENCY_BUCKETS_MS, type StatsSnapshot } from "../../../../workers/observe/types.ts";

const T0 = Date.UTC(2026, 10, 30, 10, 0, 0);

const record = (over: Partial<DecisionRecord> = {}): DecisionRecord => ({
  time: T0,
  caller: "ip:10.0.0.1",
  network: "10.0.0.1",
  plan: "free",
  method: "POST",
  cost: 1,
  decision: "admitted",
  reason: "bucket",
  status: 200,
  latencyMs: 7,
  ...over,
});

function snapshot(totals: Record<string, number>, latencyTotals: number[]): StatsSnapshot {
  return { nowMs: T0, minutes: [], totals, hours: [], latencyTotals, latencyMs: percentiles(latencyTotals), topCallers: [], recent: [] };
}

describe("prometheusText", () => {
  it("writes HELP and TYPE once per family, counters as given, the latency as a cumulative histogram in seconds", () => {
    const latency = new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
    latency[0] = 2; // ≤ 5 ms
    latency[3] = 1; // ≤ 50 ms
    latency[LATENCY_BUCKETS_MS.length] = 1; // > 10 s
    const text = prometheusText(
      snapshot(
        {
          'requests_total{decision="admitted"}': 3,
          'requests_total{decision="payment_required"}': 1,
          'paid_total{scheme="l402",unit="sats"}': 20,
          stats_flushes_total: 2,
        },
        latency,
      ),
    );
    const lines = text.split("\n");
    expect(text.endsWith("\n")).toBe(true);
    expect(lines.filter((l) => l === "# TYPE tollbooth_requests_total counter")).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith("# HELP tollbooth_requests_total "))).toHaveLength(1);
    expect(lines).toContain('tollbooth_requests_total{decision="admitted"} 3');
    expect(lines).toContain('tollbooth_paid_total{scheme="l402",unit="sats"} 20');
    expect(lines).toContain("tollbooth_stats_flushes_total 2");
    expect(lines).toContain("# TYPE tollbooth_request_duration_seconds histogram");
    expect(lines).toContain('tollbooth_request_duration_seconds_bucket{le="0.005"} 2');
    expect(lines).toContain('tollbooth_request_duration_seconds_bucket{le="0.025"} 2');
    expect(lines).toContain('tollbooth_request_duration_seconds_bucket{le="0.05"} 3');
    expect(lines).toContain('tollbooth_request_duration_seconds_bucket{le="10"} 3');
    expect(lines).toContain('tollbooth_request_duration_seconds_bucket{le="+Inf"} 4');
    expect(lines).toContain("tollbooth_request_duration_seconds_count 4");
    // Every sample line of a family follows its TYPE line (the format's grouping rule).
    let family = "";
    for (const l of lines.filter(Boolean)) {
      const type = /^# TYPE (\S+) /.exec(l);
      if (type) family = type[1]!;
      else if (!l.startsWith("#")) expect(l.startsWith(family)).toBe(true);
    }
  });

  it("writes the histogram's _sum in seconds from the summed milliseconds, between the buckets and _count, and no counter family for it", () => {
    const latency = new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
    latency[1] = 2; // 7 ms and 8 ms
    latency[5] = 1; // 230 ms
    const batch = emptyBatch("i");
    for (const ms of [7, 8, 230]) addRecord(batch, record({ latencyMs: ms }));
    const counters = Object.values(batch.minutes)[0]!.counters;
    expect(counters[LATENCY_SUM_KEY]).toBe(245);
    const lines = prometheusText(snapshot({ 'requests_total{decision="admitted"}': 3, [LATENCY_SUM_KEY]: 245 }, latency)).split("\n");
    const hist = lines.filter((l) => l.startsWith("tollbooth_request_duration_seconds"));
    expect(hist.slice(-3)).toEqual([
      'tollbooth_request_duration_seconds_bucket{le="+Inf"} 3',
      "tollbooth_request_duration_seconds_sum 0.245",
      "tollbooth_request_duration_seconds_count 3",
    ]);
    // The sum is part of the histogram only: no `# TYPE` or sample of its own.
    expect(lines.some((l) => l.includes(LATENCY_SUM_KEY))).toBe(false);
    expect(lines.filter((l) => l.startsWith("# TYPE "))).toEqual([
      "# TYPE tollbooth_requests_total counter",
      "# TYPE tollbooth_request_duration_seconds histogram",
    ]);
  });

  it("has the requests family and an empty histogram before any request", () => {
    const text = prometheusText(snapshot({}, new Array(LATENCY_BUCKETS_MS.length + 1).fill(0)));
    expect(text).toContain("# TYPE tollbooth_requests_total counter");
    expect(text).toContain("tollbooth_request_duration_seconds_count 0");
    expect(text).toContain("tollbooth_request_duration_seconds_sum 0\n");
  });
});

describe("countersOf", () => {
  it("counts what paid, the refusal's scheme and reason, the layer, solves, payments and origin errors", () => {
    expect(countersOf(record())).toEqual({ 'requests_total{decision="admitted"}': 1, 'admitted_total{paid_by="bucket"}': 1 });
    expect(countersOf(record({ decision: "payment_required", reason: "solution_spent", scheme: "pow", status: 402 }))).toEqual({
      'requests_total{decision="payment_required"}': 1,
      'payment_required_total{scheme="pow",reason="solution_spent"}': 1,
    });
    expect(
      countersOf(record({ decision: "payment_required", reason: "over_budget", status: 402 }))[
        'payment_required_total{scheme="none",reason="over_budget"}'
      ],
    ).toBe(1);
    expect(countersOf(record({ decision: "rate_limited", reason: "network", status: 429 }))['rate_limited_total{layer="network"}']).toBe(1);
    expect(
      countersOf(record({ decision: "bad_request", reason: "payload_too_large", status: 413 }))['bad_request_total{status="413"}'],
    ).toBe(1);
    const paid = countersOf(
      record({ reason: "x402", scheme: "x402", redeemed: true, paid: { scheme: "x402", amount: "10000", unit: "atomic" } }),
    );
    expect(paid['redeemed_total{scheme="x402"}']).toBe(1);
    expect(paid['payments_total{scheme="x402"}']).toBe(1);
    expect(paid['paid_total{scheme="x402",unit="atomic"}']).toBe(10000);
    expect(countersOf(record({ status: 504, originError: "timeout" }))['origin_errors_total{status="504"}']).toBe(1);
    expect(countersOf(record({ status: 503, originStatus: 503 }))['origin_errors_total{status="503"}']).toBe(1);
    expect(Object.keys(countersOf(record({ status: 404, originStatus: 404 })))).toHaveLength(2);
  });

  it("counts every decision under requests_total, and what paid every admitted request under admitted_total (unmetered included)", () => {
    for (const paidBy of ["bucket", "token", "solution", "l402", "x402", "free"]) {
      expect(countersOf(record({ reason: paidBy }))).toEqual({
        'requests_total{decision="admitted"}': 1,
        [`admitted_total{paid_by="${paidBy}"}`]: 1,
      });
    }
    // An admitted record with no reason paid nothing: free.
    expect(countersOf(record({ reason: undefined }))).toEqual({
      'requests_total{decision="admitted"}': 1,
      'admitted_total{paid_by="free"}': 1,
    });
    for (const kind of ["timeout", "unreachable"]) {
      expect(countersOf(record({ decision: "admitted_unmetered", reason: `store_${kind}` }))).toEqual({
        'requests_total{decision="admitted_unmetered"}': 1,
        'admitted_total{paid_by="unmetered"}': 1,
        [`store_failures_total{reason="store_${kind}"}`]: 1,
      });
    }
    expect(countersOf(record({ decision: "payment_required", reason: "x402_underpaid", scheme: "x402", status: 402 }))).toEqual({
      'requests_total{decision="payment_required"}': 1,
      'payment_required_total{scheme="x402",reason="x402_underpaid"}': 1,
    });
    for (const layer of ["network", "ceiling", "sessions", "streams", "origin", "over_budget"]) {
      expect(countersOf(record({ decision: "rate_limited", reason: layer, status: 429 }))).toEqual({
        'requests_total{decision="rate_limited"}': 1,
        [`rate_limited_total{layer="${layer}"}`]: 1,
      });
    }
    for (const status of [400, 403, 405, 408, 413, 415]) {
      expect(countersOf(record({ decision: "bad_request", reason: "x", status }))).toEqual({
        'requests_total{decision="bad_request"}': 1,
        [`bad_request_total{status="${status}"}`]: 1,
      });
    }
    // A Durable Object's failure, by its kind (and which object), whether refused or forwarded unmetered.
    for (const reason of [
      "store_overloaded",
      "store_timeout",
      "store_error",
      "store_unreachable",
      "origin_gate_overloaded",
      "origin_gate_timeout",
    ]) {
      expect(countersOf(record({ decision: "unavailable", reason, status: 503 }))).toEqual({
        'requests_total{decision="unavailable"}': 1,
        [`store_failures_total{reason="${reason}"}`]: 1,
      });
    }
    // Decisions with no family of their own: counted once, under requests_total.
    expect(countersOf(record({ decision: "unavailable", reason: "x402_facilitator_unavailable", status: 503 }))).toEqual({
      'requests_total{decision="unavailable"}': 1,
    });
    expect(countersOf(record({ decision: "blocked", reason: "blocked", status: 403 }))).toEqual({
      'requests_total{decision="blocked"}': 1,
    });
    expect(countersOf(record({ decision: "own_endpoint", reason: "status", status: 200 }))).toEqual({
      'requests_total{decision="own_endpoint"}': 1,
    });
  });

  it("never makes a label of a value outside its vocabulary", () => {
    const c = countersOf(record({ decision: "payment_required", scheme: 'x"}\n', reason: "A".repeat(100) }));
    expect(Object.keys(c)).toContain('payment_required_total{scheme="other",reason="other"}');
  });
});

describe("shortCaller", () => {
  it("cuts a credential hash to its prefix and 12 characters; keeps a network or a payer address whole", () => {
    expect(shortCaller("key:3f9a0c1d2e4b5a6c7d8e9f0a1b2c3d4e")).toBe("key:3f9a0c1d2e4b…");
    expect(shortCaller("ip:203.0.113.7")).toBe("ip:203.0.113.7");
    expect(shortCaller("ip:2001:db8:1:2::/64")).toBe("ip:2001:db8:1:2::/64");
    // Two networks sharing their first 12 characters stay two callers.
    expect(shortCaller("ip:203.0.113.10/32")).not.toBe(shortCaller("ip:203.0.113.11/32"));
    expect(shortCaller("evm:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")).toBe("evm:0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed");
    expect(shortCaller("jwt:0123456789abcdef0123456789abcdef")).toBe("jwt:0123456789ab…");
    expect(shortCaller("anonymous")).toBe("anonymous");
  });
});

describe("percentiles", () => {
  it("reads the upper bound of the bucket holding each quantile; 0 without requests", () => {
    const h = new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
    expect(percentiles(h)).toEqual({ p50: 0, p90: 0, p99: 0 });
    h[0] = 50; // ≤ 5
    h[4] = 45; // ≤ 100
    h[7] = 5; // ≤ 1000
    expect(percentiles(h)).toEqual({ p50: 5, p90: 100, p99: 1000 });
  });
});

describe("batches stay bounded", () => {
  it("at most MAX_CALLERS_PER_MINUTE callers per minute, at most MAX_RECENT records", () => {
    const b = emptyBatch("i");
    for (let i = 0; i < MAX_CALLERS_PER_MINUTE + 50; i++) addRecord(b, record({ caller: `key:c${i}` }));
    const m = Object.values(b.minutes)[0]!;
    expect(Object.keys(m.callers).length).toBeLessThanOrEqual(MAX_CALLERS_PER_MINUTE);
    expect(b.recent).toHaveLength(MAX_RECENT);
    expect(b.recent.at(-1)!.caller).toBe(`key:c${MAX_CALLERS_PER_MINUTE + 49}`);
  });
});

describe("top callers: a Misra–Gries summary per minute", () => {
  const K = MAX_CALLERS_PER_MINUTE;
  /** The true count of each caller in a stream of records. */
  const truth = (stream: readonly string[]) => stream.reduce((t, c) => t.set(c, (t.get(c) ?? 0) + 1), new Map<string, number>());
  /** The summary's guarantee, checked for every caller of the stream: count ≤ true ≤ count + error, error ≤ N / (k + 1). */
  function expectGuarantee(m: BatchMinute, stream: readonly string[]): void {
    const error = m.callersError ?? 0;
    expect(error).toBeLessThanOrEqual(stream.length / (K + 1));
    expect(Object.keys(m.callers).length).toBeLessThanOrEqual(K);
    for (const [caller, n] of truth(stream)) {
      const counted = m.callers[caller]?.requests ?? 0;
      expect(counted, caller).toBeLessThanOrEqual(n);
      expect(counted + error, caller).toBeGreaterThanOrEqual(n);
    }
  }
  const minuteOf = (b: StatsBatch) => Object.values(b.minutes)[0]!;

  it("250 one-request names, then a heavy abuser: the abuser is listed, its count within the error bound (not hidden as the 251st name)", () => {
    const stream = [...Array.from({ length: 250 }, (_, i) => `key:cheap${i}`), ...Array.from({ length: 300 }, () => "ip:203.0.113.0/24")];
    const b = emptyBatch("i");
    for (const caller of stream) addRecord(b, record({ caller, decision: "rate_limited", reason: "ceiling", status: 429 }));
    const m = minuteOf(b);
    const abuser = m.callers["ip:203.0.113.0/24"]!;
    expect(abuser.requests).toBeLessThanOrEqual(300);
    expect(abuser.requests + m.callersError!).toBeGreaterThanOrEqual(300);
    expect(abuser.requests).toBeGreaterThan(300 - 550 / (K + 1));
    expect(abuser.refused).toBe(abuser.requests);
    expect(abuser.admitted).toBe(0);
    // The heaviest counter is the abuser's.
    expect(Object.entries(m.callers).sort((x, y) => y[1].requests - x[1].requests)[0]![0]).toBe("ip:203.0.113.0/24");
    expectGuarantee(m, stream);
  });

  it("holds its guarantee over random streams: a few heavy callers among thousands of light ones, in any order", () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 20; round++) {
      const heavy = Array.from({ length: 1 + (round % 5) }, (_, i) => `key:heavy${round}-${i}`);
      const stream: string[] = [];
      for (let i = 0; i < 3000; i++)
        stream.push(random() < 0.3 ? heavy[Math.floor(random() * heavy.length)]! : `key:light${round}-${Math.floor(random() * 2000)}`);
      const b = emptyBatch("i");
      for (const caller of stream) addRecord(b, record({ caller }));
      const m = minuteOf(b);
      expectGuarantee(m, stream);
      // Every caller above N / (k + 1) is named.
      for (const [caller, n] of truth(stream)) if (n > stream.length / (K + 1)) expect(m.callers[caller], caller).toBeDefined();
    }
  });

  it("merged (an isolate's batch into another, as the Stats object merges flushes), the guarantee holds for the union", () => {
    const a: string[] = [...Array.from({ length: 400 }, (_, i) => `key:a${i}`), ...Array.from({ length: 120 }, () => "key:abuser")];
    const c: string[] = [...Array.from({ length: 120 }, () => "key:abuser"), ...Array.from({ length: 400 }, (_, i) => `key:c${i}`)];
    const into = emptyBatch("a");
    const from = emptyBatch("c");
    for (const caller of a) addRecord(into, record({ caller }));
    for (const caller of c) addRecord(from, record({ caller }));
    mergeBatch(into, from);
    const m = minuteOf(into);
    expectGuarantee(m, [...a, ...c]);
    expect(m.callers["key:abuser"]!.requests).toBeGreaterThan(240 - 1040 / (K + 1));
  });
});

describe("statsFlusher", () => {
  afterEach(() => vi.useRealTimers());

  /** A fake Stats namespace whose object records flushes, failing the first `failures`. */
  function fakeStats(failures: number) {
    const batches: StatsBatch[] = [];
    let left = failures;
    const stub = {
      flush: async (b: StatsBatch) => {
        if (left-- > 0) throw new Error("overloaded");
        batches.push(structuredClone(b));
        return { flushes: batches.length };
      },
    };
    const ns = { idFromName: (n: string) => n, get: () => stub } as unknown as DurableObjectNamespace<never>;
    return { ns, batches };
  }

  it("sends one batch per interval whatever the number of records, scheduled by the first", async () => {
    vi.useFakeTimers();
    const { ns, batches } = fakeStats(0);
    const f = statsFlusher({ stats: ns as never, intervalMs: 1000 });
    const waits: Promise<unknown>[] = [];
    for (let i = 0; i < 500; i++) f.add(record(), (p) => waits.push(p));
    expect(waits).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(batches).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    await Promise.all(waits);
    expect(batches).toHaveLength(1);
    expect(batches[0]!.records).toBe(500);
  });

  it("keeps a failed batch and sends it with the next one", async () => {
    vi.useFakeTimers();
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { ns, batches } = fakeStats(1);
    const f = statsFlusher({ stats: ns as never, intervalMs: 1000 });
    for (let i = 0; i < 3; i++) f.add(record(), null);
    await vi.advanceTimersByTimeAsync(1000);
    expect(batches).toHaveLength(0);
    f.add(record({ decision: "rate_limited", reason: "network" }), null);
    await vi.advanceTimersByTimeAsync(1000);
    expect(batches).toHaveLength(1);
    expect(batches[0]!.records).toBe(4);
    expect(Object.values(batches[0]!.minutes)[0]!.counters['requests_total{decision="admitted"}']).toBe(3);
    expect(batches[0]!.recent.at(-1)!.decision).toBe("rate_limited");
  });

  it("refuses an interval out of range, and reads the var", () => {
    const { ns } = fakeStats(0);
    expect(() => statsFlusher({ stats: ns as never, intervalMs: 10 })).toThrow(/intervalMs/);
    expect(parseFlushMs(undefined)).toBe(5000);
    expect(parseFlushMs("0")).toBe(0);
    expect(parseFlushMs("250")).toBe(250);
    expect(() => parseFlushMs("5")).toThrow(/TOLLBOOTH_METRICS_FLUSH_MS/);
    expect(() => parseFlushMs("1e3")).toThrow(/TOLLBOOTH_METRICS_FLUSH_MS/);
  });
});
