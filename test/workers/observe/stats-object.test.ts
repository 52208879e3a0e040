/**
 * The metrics (docs/observability.md): after a known mix of requests, `GET /admin/metrics`
 * (Prometheus text 0.0.4) and `GET /admin/stats` show exactly those counts; the `Stats` object
 * gets at most one flush per isolate per interval, however many requests arrive; Analytics
 * Engine gets one data point per request with the documented columns.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { MoneySummary } from "../../../workers/admin/money.ts";
import type { NetworkLimiter } from "../../../workers/env.ts";
import { base64Json, FACILITATOR, FACILITATOR_URL, fakeFacilitator, fakeLnd, LND_MACAROON_HEX, LND_URL, x402Payment } from "../payments.ts";
import {
  challengeOf,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  observeOrigin,
  type PolicyJson,
  parseChallenge,
  post,
  request,
  rpc,
  solve,
  toolCall,
} from "../support.ts";

const ADMIN = "admin-token-0123456789abcdef";
const FLUSH_MS = 200;

/** A network ceiling that refuses every request of `refused` (an `ip:` network) and admits the rest. */
const refusing = (refused: string): NetworkLimiter => ({ limit: async ({ key }) => ({ success: key !== refused }) });

/** Metric samples of a Prometheus text: `name{labels}` → value; asserts every line is a comment or a sample. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.trimEnd().split("\n")) {
    if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    expect(m, `sample line: ${line}`).not.toBeNull();
    out.set(m![1]!, Number(m![2]));
  }
  return out;
}

/** The shortened caller of an IP caller, as docs/observability.md describes it. */
const shortIp = (ip: string) => `ip:${ip}`;

describe("metrics after a known mix of requests", () => {
  it("GET /admin/metrics counts each decision exactly, and /admin/stats agrees", async () => {
    freezeTime();
    const origin = observeOrigin();
    const ip = freshIp();
    const flood = freshIp();
    const policy: PolicyJson = { bucket: { capacity: 3, refillPerSecond: 0.001 }, challenge: { difficulty: 4, credits: 5 } };
    const gw = gateway(policy, {
      TOLLBOOTH_ADMIN_TOKEN: ADMIN,
      TOLLBOOTH_METRICS_FLUSH_MS: String(FLUSH_MS),
      TOLLBOOTH_NETWORK_LIMIT: refusing(`ip:${flood}`),
    });

    for (let i = 1; i <= 3; i++) expect((await gw(post(toolCall(i), { ip }))).status).toBe(200);
    expect((await gw(post(toolCall(4), { ip }))).status).toBe(402);
    const refused = await gw(post(toolCall(5), { ip }));
    expect(refused.status).toBe(402);
    const paid = await gw(post(toolCall(6), { ip, headers: { "tollbooth-solution": (await solve(challengeOf(refused))).header } }));
    expect(paid.status).toBe(200);
    const token = paid.headers.get("tollbooth-token")!;
    expect((await gw(post(toolCall(7), { ip, headers: { "tollbooth-token": token } }))).status).toBe(200);
    expect((await gw(post(toolCall(8), { ip: flood }))).status).toBe(429);
    expect((await gw(post("{", { ip }))).status).toBe(400);
    expect((await gw(post(rpc("tools/list", {}, 10), { ip }))).status).toBe(200);
    expect(origin.requests).toHaveLength(6);

    const res = await gw(request("GET", "/admin/metrics", { headers: { authorization: `Bearer ${ADMIN}` } }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain("# TYPE tollbooth_requests_total counter");
    expect(text).toContain("# TYPE tollbooth_request_duration_seconds histogram");
    const m = samples(text);
    const expected: Record<string, number> = {
      'tollbooth_requests_total{decision="admitted"}': 6,
      'tollbooth_requests_total{decision="payment_required"}': 2,
      'tollbooth_requests_total{decision="rate_limited"}': 1,
      'tollbooth_requests_total{decision="bad_request"}': 1,
      'tollbooth_admitted_total{paid_by="bucket"}': 3,
      'tollbooth_admitted_total{paid_by="solution"}': 1,
      'tollbooth_admitted_total{paid_by="token"}': 1,
      'tollbooth_admitted_total{paid_by="free"}': 1,
      'tollbooth_payment_required_total{scheme="none",reason="over_budget"}': 2,
      'tollbooth_rate_limited_total{layer="network"}': 1,
      'tollbooth_bad_request_total{status="400"}': 1,
      'tollbooth_redeemed_total{scheme="pow"}': 1,
      'tollbooth_request_duration_seconds_bucket{le="+Inf"}': 10,
      tollbooth_request_duration_seconds_count: 10,
    };
    for (const [name, value] of Object.entries(expected)) expect(m.get(name), name).toBe(value);
    // Nothing else was counted: no other decision, no origin error, no payment.
    const requestKinds = [...m.keys()].filter((k) => k.startsWith("tollbooth_requests_total"));
    expect(requestKinds).toHaveLength(4);
    expect([...m.keys()].some((k) => k.startsWith("tollbooth_origin_errors_total") || k.startsWith("tollbooth_paid_total"))).toBe(false);
    // Buckets are cumulative and end at the count.
    const buckets = [...m.entries()].filter(([k]) => k.startsWith("tollbooth_request_duration_seconds_bucket"));
    expect(buckets.length).toBe(12);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);

    const stats = (await (
      await gw(request("GET", "/admin/stats", { headers: { authorization: `Bearer ${ADMIN}` } }))
    ).json()) as import("../../../workers/observe/types.ts").StatsSnapshot;
    const minute = stats.minutes.at(-1)!;
    expect(minute.counters['requests_total{decision="admitted"}']).toBe(6);
    expect(minute.latency.reduce((a, b) => a + b, 0)).toBe(10);
    expect(stats.topCallers[0]).toEqual({ caller: shortIp(ip), requests: 9, admitted: 6, refused: 2, error: 0 });
    expect(stats.topCallers.find((c) => c.caller === shortIp(flood))).toEqual({
      caller: shortIp(flood),
      requests: 1,
      admitted: 0,
      refused: 1,
      error: 0,
    });
    expect(stats.recent).toHaveLength(10);
    expect(stats.recent[0]).toMatchObject({ decision: "admitted", rpc: "tools/list", reason: "free" });
    // The histogram's _sum: the recorded latencies added up, in seconds.
    expect(m.get("tollbooth_request_duration_seconds_sum")).toBe(stats.recent.reduce((a, r) => a + r.latencyMs, 0) / 1000);
  });

  it("counts origin errors: the origin's 5xx and the proxy's own 502", async () => {
    const ip = freshIp();
    let fail: "500" | "unreachable" = "500";
    observeOrigin(() => {
      if (fail === "unreachable") throw new TypeError("connection refused");
      return new Response("boom", { status: 500 });
    });
    const gw = gateway({ realm: "origin-errors" }, { TOLLBOOTH_METRICS_FLUSH_MS: String(FLUSH_MS) });
    expect((await gw(post(toolCall(1), { ip }))).status).toBe(500);
    fail = "unreachable";
    expect((await gw(post(toolCall(2), { ip }))).status).toBe(502);
    const snap = await env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 5 });
    expect(snap.totals['origin_errors_total{status="500"}']).toBe(1);
    expect(snap.totals['origin_errors_total{status="502"}']).toBe(1);
    expect(snap.recent[0]).toMatchObject({ status: 502, originError: "unreachable" });
    expect(snap.recent[0]!.originStatus).toBeUndefined();
    expect(snap.recent[1]).toMatchObject({ status: 500, originStatus: 500 });
  });
});

describe("every decision and every paid_by is counted", () => {
  /** A CallerState namespace whose every call fails: the caller's state cannot be reached. */
  const downStore = (): DurableObjectNamespace =>
    ({
      idFromName: (name: string) => env.CALLER_BUCKET.idFromName(name),
      get: () => new Proxy({}, { get: () => () => Promise.reject(new Error("store down")) }),
      getByName: () => new Proxy({}, { get: () => () => Promise.reject(new Error("store down")) }),
    }) as unknown as DurableObjectNamespace;

  it("admitted by bucket, free, solution, token, l402, x402 and unmetered; payment_required, rate_limited, bad_request, unavailable, blocked, own_endpoint: each exactly once in /admin/metrics and /admin/stats", async () => {
    freezeTime();
    vi.spyOn(console, "error").mockImplementation(() => {});
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const facilitator = fakeFacilitator();
    const lnd = fakeLnd();
    const origin = observeOrigin(undefined, { [FACILITATOR_URL]: facilitator.service, [LND_URL]: lnd.service });
    const [ip, payerIp, flood, blockedIp] = [freshIp(), freshIp(), freshIp(), freshIp()];
    const policy: PolicyJson = {
      realm: "every-decision",
      bucket: { capacity: 1, refillPerSecond: 0.001 },
      challenge: { difficulty: 4, credits: 5 },
      l402: { sats: 10, credits: 5 },
      lightning: { backend: "lnd", url: LND_URL, invoicesPerSecond: 1000 },
      x402: { mode: "credits", amount: "10000", credits: 5 },
      facilitator: FACILITATOR,
    };
    const admin = { authorization: `Bearer ${ADMIN}` };
    const vars = {
      TOLLBOOTH_ADMIN_TOKEN: ADMIN,
      TOLLBOOTH_METRICS_FLUSH_MS: String(FLUSH_MS),
      TOLLBOOTH_LIGHTNING_SECRET: LND_MACAROON_HEX,
    };
    const gw = gateway(policy, { ...vars, TOLLBOOTH_NETWORK_LIMIT: refusing(`ip:${flood}`) });

    expect((await gw(post(toolCall(1), { ip }))).status).toBe(200); // bucket
    expect((await gw(post(rpc("tools/list", {}, 2), { ip }))).status).toBe(200); // free (cost 0)
    const over = await gw(post(toolCall(3), { ip })); // payment_required
    expect(over.status).toBe(402);
    const challenges = (await errorBody(over.clone())).error.data!.challenges as Array<{
      type: string;
      macaroon?: string;
      invoice?: string;
    }>;
    const l402 = challenges.find((c) => c.type === "l402")!;
    // The PowChallenge field line (workerd joins it with the L402 one in one header value).
    const pow = parseChallenge(over.headers.get("www-authenticate")!.split(/, (?=L402 )/)[0]!);
    const paid = await gw(post(toolCall(4), { ip, headers: { "tollbooth-solution": (await solve(pow)).header } })); // solution
    expect(paid.status).toBe(200);
    expect((await gw(post(toolCall(5), { ip, headers: { "tollbooth-token": paid.headers.get("tollbooth-token")! } }))).status).toBe(200); // token
    expect(
      (await gw(post(toolCall(6), { ip, headers: { authorization: `L402 ${l402.macaroon}:${lnd.preimageOf(l402.invoice!)}` } }))).status,
    ).toBe(200); // l402
    expect(
      (await gw(post(toolCall(7), { ip: payerIp, headers: { "payment-signature": base64Json(await x402Payment("10000")) } }))).status,
    ).toBe(200); // x402
    expect((await gw(post(toolCall(8), { ip: flood }))).status).toBe(429); // rate_limited (network)
    expect((await gw(post("{", { ip }))).status).toBe(400); // bad_request
    expect((await gw(request("GET", "/.well-known/tollbooth", { ip }))).status).toBe(200); // own_endpoint
    const block = await gw(
      new Request(`http://gw.test/admin/callers/${encodeURIComponent(`ip:${blockedIp}`)}/block`, {
        method: "POST",
        headers: { ...admin, "content-type": "application/json" },
        body: JSON.stringify({ seconds: 600 }),
      }),
    );
    expect(block.status).toBe(200);
    expect((await gw(post(toolCall(9), { ip: blockedIp }))).status).toBe(403); // blocked
    // The caller's state unreachable: forwarded unmetered ("open"), or refused 503 ("closed").
    const open = gateway({ ...policy, onStoreError: "open" }, { ...vars, CALLER_BUCKET: downStore() as never });
    const unmetered = await open(post(toolCall(10), { ip }));
    expect(unmetered.status).toBe(200);
    expect(unmetered.headers.get("tollbooth-degraded")).toBe("store-unavailable");
    const closed = gateway({ ...policy, onStoreError: "closed" }, { ...vars, CALLER_BUCKET: downStore() as never });
    expect((await closed(post(toolCall(11), { ip }))).status).toBe(503); // unavailable
    expect(origin.requests).toHaveLength(7);

    const m = samples(await (await gw(request("GET", "/admin/metrics", { headers: admin }))).text());
    const counted = (family: string) => Object.fromEntries([...m].filter(([k]) => k.startsWith(`tollbooth_${family}{`)));
    expect(counted("requests_total")).toEqual({
      'tollbooth_requests_total{decision="admitted"}': 6,
      'tollbooth_requests_total{decision="admitted_unmetered"}': 1,
      'tollbooth_requests_total{decision="payment_required"}': 1,
      'tollbooth_requests_total{decision="rate_limited"}': 1,
      'tollbooth_requests_total{decision="bad_request"}': 1,
      'tollbooth_requests_total{decision="unavailable"}': 1,
      'tollbooth_requests_total{decision="blocked"}': 1,
      'tollbooth_requests_total{decision="own_endpoint"}': 1,
    });
    expect(counted("admitted_total")).toEqual({
      'tollbooth_admitted_total{paid_by="bucket"}': 1,
      'tollbooth_admitted_total{paid_by="free"}': 1,
      'tollbooth_admitted_total{paid_by="solution"}': 1,
      'tollbooth_admitted_total{paid_by="token"}': 1,
      'tollbooth_admitted_total{paid_by="l402"}': 1,
      'tollbooth_admitted_total{paid_by="x402"}': 1,
      'tollbooth_admitted_total{paid_by="unmetered"}': 1,
    });
    expect(counted("payment_required_total")).toEqual({ 'tollbooth_payment_required_total{scheme="none",reason="over_budget"}': 1 });
    expect(counted("rate_limited_total")).toEqual({ 'tollbooth_rate_limited_total{layer="network"}': 1 });
    // The store's plain errors (no flag: not the object's own code) are "unreachable": one forwarded unmetered, one refused.
    expect(counted("store_failures_total")).toEqual({ 'tollbooth_store_failures_total{reason="store_unreachable"}': 2 });
    expect(counted("bad_request_total")).toEqual({ 'tollbooth_bad_request_total{status="400"}': 1 });
    expect(counted("redeemed_total")).toEqual({
      'tollbooth_redeemed_total{scheme="pow"}': 1,
      'tollbooth_redeemed_total{scheme="l402"}': 1,
      'tollbooth_redeemed_total{scheme="x402"}': 1,
    });
    expect(counted("payments_total")).toEqual({
      'tollbooth_payments_total{scheme="l402"}': 1,
      'tollbooth_payments_total{scheme="x402"}': 1,
    });
    expect(counted("paid_total")).toEqual({
      'tollbooth_paid_total{scheme="l402",unit="sats"}': 10,
      'tollbooth_paid_total{scheme="x402",unit="atomic"}': 10000,
    });
    expect(m.get("tollbooth_request_duration_seconds_count")).toBe(13);

    const stats = (await (
      await gw(request("GET", "/admin/stats", { headers: admin }))
    ).json()) as import("../../../workers/observe/types.ts").StatsSnapshot;
    expect(stats.totals['admitted_total{paid_by="unmetered"}']).toBe(1);
    expect(stats.totals['requests_total{decision="admitted_unmetered"}']).toBe(1);
    expect(stats.totals['requests_total{decision="unavailable"}']).toBe(1);
    expect(stats.totals['requests_total{decision="blocked"}']).toBe(1);
    expect(stats.totals['requests_total{decision="own_endpoint"}']).toBe(1);
    expect(stats.recent).toHaveLength(13);

    // The dashboard's money (workers/admin/money.ts): the same two payments in the hour and in the day, counted and shown.
    const { money, hours } = stats as typeof stats & { money: MoneySummary };
    for (const w of [money.lastHour, money.lastDay]) {
      expect(w.received.map((r) => [r.scheme, r.payments, r.amount, r.unit, `${r.shown.amount} ${r.shown.unit}`])).toEqual([
        ["l402", 1, "10", "sats", "10 sats"],
        ["x402", 1, "10000", "atomic", "0.01 USDC"],
      ]);
      expect(w.redeemed).toEqual({ pow: 1, l402: 1, x402: 1 });
    }
    expect(hours).toHaveLength(24);
    expect(hours.at(-1)!.counters).toEqual({
      'payments_total{scheme="l402"}': 1,
      'payments_total{scheme="x402"}': 1,
      'paid_total{scheme="l402",unit="sats"}': 10,
      'paid_total{scheme="x402",unit="atomic"}': 10000,
      'redeemed_total{scheme="pow"}': 1,
      'redeemed_total{scheme="l402"}': 1,
      'redeemed_total{scheme="x402"}': 1,
    });
    // The 402 offered a 4-bit challenge: the latest difficulty.
    expect(money.difficulty?.bits).toBe(4);
  });
});

describe("flushes into the Stats object", () => {
  it("200 requests in a burst: at most one flush per interval from the isolate, and every request counted", async () => {
    observeOrigin();
    const gw = gateway(
      { realm: "burst", bucket: { capacity: 1000, refillPerSecond: 1 }, ceiling: { capacity: 1000, refillPerSecond: 1 } },
      { TOLLBOOTH_METRICS_FLUSH_MS: String(FLUSH_MS) },
    );
    const ips = Array.from({ length: 20 }, () => freshIp());
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => gw(post(toolCall(i), { ip: ips[i % ips.length] }))));
    const duration = Date.now() - started;
    expect(answers.every((r) => r.status === 200)).toBe(true);
    const snap = await env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 5 });
    expect(snap.totals['requests_total{decision="admitted"}']).toBe(200);
    expect(snap.latencyTotals.reduce((a, b) => a + b, 0)).toBe(200);
    const flushes = snap.totals.stats_flushes_total!;
    expect(flushes).toBeGreaterThanOrEqual(1);
    expect(flushes).toBeLessThanOrEqual(Math.ceil(duration / FLUSH_MS) + 1);
    expect(snap.topCallers).toHaveLength(20);
    expect(snap.topCallers.every((c) => c.requests === 10)).toBe(true);
  });

  it("a flush writes rows per minute, counter, latency bucket and caller, not per request: 960 admitted requests of 16 callers at the default sampling write under 0.1 row each (SQLite counts an index entry as a row)", async () => {
    observeOrigin();
    const gw = gateway(
      { realm: "rows", bucket: { capacity: 1000, refillPerSecond: 1 }, ceiling: { capacity: 1000, refillPerSecond: 1 } },
      // The deployed defaults: a flush per 5 s per isolate, one admitted line in 100.
      { TOLLBOOTH_METRICS_FLUSH_MS: "5000", TOLLBOOTH_DECISION_LOG_SAMPLE: "100" },
    );
    const stub = env.TOLLBOOTH_STATS!.getByName("tollbooth-stats");
    type Counted = { sql: SqlStorage; rowsWritten?: number };
    // Count the rows each statement of the object writes (`cursor.rowsWritten`), as bench:gateway does.
    await runInDurableObject(stub, (instance) => {
      const o = instance as unknown as Counted;
      const exec = o.sql.exec.bind(o.sql);
      o.rowsWritten = 0;
      o.sql.exec = ((query: string, ...bindings: unknown[]) => {
        const cursor = exec(query, ...bindings);
        o.rowsWritten! += cursor.rowsWritten;
        return cursor;
      }) as SqlStorage["exec"];
    });
    const ips = Array.from({ length: 16 }, () => freshIp());
    const answers = await Promise.all(Array.from({ length: 960 }, (_, i) => gw(post(toolCall(i), { ip: ips[i % ips.length] }))));
    expect(answers.map((r) => r.status)).toEqual(new Array(960).fill(200));
    const snap = await stub.snapshot({ nowMs: Date.now(), minutes: 5 });
    expect(snap.totals['requests_total{decision="admitted"}']).toBe(960);
    expect(snap.topCallers.map((c) => c.requests)).toEqual(new Array(16).fill(60));
    // The latest decisions: the sampled admitted ones only (one in 100 on average), each marked.
    expect(snap.recent.length).toBeGreaterThanOrEqual(1);
    expect(snap.recent.length).toBeLessThanOrEqual(30);
    expect(snap.recent.every((r) => r.decision === "admitted" && r.sampleInterval === 100)).toBe(true);
    const rows = await runInDurableObject(stub, (instance) => (instance as unknown as Counted).rowsWritten!);
    expect(snap.totals.stats_flushes_total).toBeLessThanOrEqual(2);
    expect(rows).toBeGreaterThan(0);
    expect(rows / 960).toBeLessThan(0.1);
  }, 30_000);

  it("without flushes configured (TOLLBOOTH_METRICS_FLUSH_MS=0), the object is never asked", async () => {
    observeOrigin();
    const gw = gateway({ realm: "no-flush" });
    expect((await gw(post(toolCall(1), { ip: freshIp() }))).status).toBe(200);
    const snap = await env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 5 });
    expect(snap.totals).toEqual({});
  });

  it("keeps the money counters per clock hour, 48 hours of them, and answers the last 24 (the other counters stay per minute)", async () => {
    const stub = env.TOLLBOOTH_STATS!.getByName("hours-test");
    const H = 3_600_000;
    const t0 = Date.UTC(2030, 0, 1, 10, 0, 0);
    const minute = (ms: number, counters: Record<string, number>) => ({
      isolate: "test",
      minutes: { [String(ms)]: { counters, latency: new Array(12).fill(0), callers: {} } },
      recent: [],
      records: 1,
    });
    const paid = {
      'paid_total{scheme="l402",unit="sats"}': 21,
      'payments_total{scheme="l402"}': 1,
      'requests_total{decision="admitted"}': 1,
    };
    await stub.flush(minute(t0 + 5 * 60_000, paid));
    await stub.flush(minute(t0 + 40 * 60_000, paid)); // the same clock hour
    await stub.flush(minute(t0 + 30 * H, { 'redeemed_total{scheme="pow"}': 2, 'requests_total{decision="admitted"}': 1 }));
    const hourRows = () =>
      runInDurableObject(stub, (_, state) =>
        state.storage.sql.exec<{ start_ms: number; counters: string }>("SELECT start_ms, counters FROM hours ORDER BY start_ms").toArray(),
      );
    expect(await hourRows()).toEqual([
      { start_ms: t0, counters: JSON.stringify({ 'paid_total{scheme="l402",unit="sats"}': 42, 'payments_total{scheme="l402"}': 2 }) },
      { start_ms: t0 + 30 * H, counters: JSON.stringify({ 'redeemed_total{scheme="pow"}': 2 }) },
    ]);
    // 30 hours later, the first hour is out of the day the snapshot answers (but still kept).
    const later = await stub.snapshot({ nowMs: t0 + 30 * H + 1000, minutes: 1 });
    expect(later.hours).toHaveLength(24);
    expect(later.hours[0]!.startMs).toBe(t0 + 7 * H);
    expect(later.hours.at(-1)).toEqual({ startMs: t0 + 30 * H, counters: { 'redeemed_total{scheme="pow"}': 2 } });
    expect(later.hours.filter((h) => Object.keys(h.counters).length > 0)).toHaveLength(1);
    const earlier = await stub.snapshot({ nowMs: t0 + 23 * H, minutes: 1 });
    expect(earlier.hours[0]).toEqual({
      startMs: t0,
      counters: { 'paid_total{scheme="l402",unit="sats"}': 42, 'payments_total{scheme="l402"}': 2 },
    });
    // A flush 48 hours after the first hour deletes it.
    await stub.flush(minute(t0 + 48 * H, { 'requests_total{decision="admitted"}': 1 }));
    expect((await hourRows()).map((r) => r.start_ms)).toEqual([t0 + 30 * H]);
  });

  it("a caller inventing identities cannot grow the per-minute caller rows past the cap, nor hide a heavy caller that comes later", async () => {
    const stub = env.TOLLBOOTH_STATS!.getByName("tollbooth-stats");
    const now = Date.now();
    const minute = String(Math.floor(now / 60_000) * 60_000);
    const callers = Object.fromEntries(
      Array.from({ length: 500 }, (_, i) => [`key:invented${i}`, { requests: 1, admitted: 0, refused: 1 }]),
    );
    await stub.flush({
      isolate: "test",
      minutes: { [minute]: { counters: { 'requests_total{decision="payment_required"}': 500 }, latency: new Array(12).fill(0), callers } },
      recent: [],
      records: 500,
    });
    await stub.flush({
      isolate: "test",
      minutes: {
        [minute]: { counters: {}, latency: new Array(12).fill(0), callers: { "key:late": { requests: 7, admitted: 7, refused: 0 } } },
      },
      recent: [],
      records: 7,
    });
    const snap = await stub.snapshot({ nowMs: now, minutes: 1 });
    // Misra–Gries: the 500 one-request names cancel out (error 1 ≤ 507 / 201); the late caller is named, its 7 within [requests, requests + error].
    expect(snap.topCallers).toEqual([{ caller: "key:late", requests: 7, admitted: 7, refused: 0, error: 1 }]);
    const rows = await runInDurableObject(
      stub,
      (_, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM callers WHERE start_ms = ?", Number(minute)).one().n,
    );
    expect(rows).toBeLessThanOrEqual(200);
  });

  it("through the gateway: 250 callers with one request each, then one network with 300: the abuser tops the list, its count within the summary's error", async () => {
    observeOrigin();
    vi.spyOn(console, "error").mockImplementation(() => {});
    const gw = gateway(
      { realm: "top-callers", bucket: { capacity: 1000, refillPerSecond: 1 }, ceiling: { capacity: 1000, refillPerSecond: 1 } },
      { TOLLBOOTH_METRICS_FLUSH_MS: String(FLUSH_MS) },
    );
    const cheap = Array.from({ length: 250 }, () => freshIp());
    for (let i = 0; i < cheap.length; i += 50) await Promise.all(cheap.slice(i, i + 50).map((ip, j) => gw(post(toolCall(i + j), { ip }))));
    const abuser = freshIp();
    // Most of them refused by the network ceiling: every one is a request of the abuser's, counted.
    for (let i = 0; i < 300; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => gw(post(toolCall(i + j), { ip: abuser }))));
    await vi.waitFor(
      async () => {
        const snap = await env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 2 });
        const top = snap.topCallers[0]!;
        expect(top.caller).toBe(shortIp(abuser));
        expect(top.requests).toBeLessThanOrEqual(300);
        expect(top.requests + top.error).toBeGreaterThanOrEqual(300);
        expect(top.error).toBeLessThanOrEqual(550 / 201);
      },
      { timeout: 10_000, interval: FLUSH_MS },
    );
  }, 60_000);
});

describe("Analytics Engine", () => {
  it("writes one data point per request with the documented columns, no credential in it", async () => {
    observeOrigin();
    const points: AnalyticsEngineDataPoint[] = [];
    const dataset: AnalyticsEngineDataset = { writeDataPoint: (p) => void points.push(p!) };
    const ip = freshIp();
    const gw = gateway(
      { realm: "analytics", bucket: { capacity: 1, refillPerSecond: 0.001 }, challenge: { difficulty: 4 } },
      { TOLLBOOTH_ANALYTICS: dataset },
    );
    expect((await gw(post(toolCall(1, "echo"), { ip, headers: { authorization: "Bearer secret-bearer-value-1234" } }))).status).toBe(200);
    expect((await gw(post(toolCall(2, "echo"), { ip }))).status).toBe(402);
    expect(points).toHaveLength(2);
    const [ok, refused] = points as [Required<AnalyticsEngineDataPoint>, Required<AnalyticsEngineDataPoint>];
    expect(ok.indexes).toEqual([shortIp(ip)]);
    expect(ok.blobs.slice(0, 8)).toEqual(["admitted", "bucket", "", "POST", "tools/call", "echo", "free", ip]);
    expect(ok.doubles[0]).toBe(200);
    expect(ok.doubles[1]).toBe(200);
    expect(ok.doubles[3]).toBe(1);
    expect(refused.blobs.slice(0, 3)).toEqual(["payment_required", "over_budget", ""]);
    expect(refused.doubles[0]).toBe(402);
    expect(refused.doubles[1]).toBe(0);
    expect(refused.doubles[4]).toBe(4);
    expect(JSON.stringify(points)).not.toContain("secret-bearer-value");
  });
});
