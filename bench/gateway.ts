/**
 * `npm run bench:gateway`: what tollbooth adds to each request — latency, CPU (which Workers
 * bill) and dollars — against what a user would otherwise write, with its Durable Objects
 * next door (local) and far away.
 *
 * One run on this machine, with a real server-everything origin:
 * 1. Local, under `wrangler dev` (local workerd) for every Worker. The same MCP workload —
 *    `tools/call` echo on an open session, in budget everywhere — with 1 and 16 concurrent
 *    clients (each its own session and `x-api-key`), sent in alternation (ROUNDS rounds of
 *    SEGMENT_MS per path and concurrency, path order rotated each round, after one warm-up
 *    segment each) to:
 *    a. the origin directly;
 *    b. a bare pass-through Worker (bench/passthrough-worker);
 *    c. a pass-through Worker with the rate limiter of Cloudflare's "Build a rate limiter"
 *       Durable Objects example (bench/do-limiter-worker: one DO call per request);
 *    d. tollbooth with a generous policy: every layer of a default deployment (the network
 *       ceiling binding, one reading of the body, a verified identity — issued API keys
 *       listed in the policy, so each client is its own caller — the caller's object, the
 *       origin proof over the body's digest, the decision log line, the metrics' `Stats`);
 *    e. the same with an origin ceiling (`originCeiling`: leases of the ceiling from a shard
 *       object, renewed about once per dozen requests; docs/allocation.md), f. without the network ceiling binding, and
 *       g. without the decision log line (`TOLLBOOTH_DECISION_LOG=off`).
 *    c–g run behind the bench-only counting wrappers (bench/far-do-limiter,
 *    bench/far-tollbooth: the unchanged Workers, every Durable Object call, `Stats` flush,
 *    KV read, Analytics Engine data point, SQLite row written and alarm counted) with
 *    `DO_DELAY_MS=0`.
 *    For each: p50 / p99 latency (ms), throughput (requests/s), DO calls per request, and
 *    the CPU time per request (ms) of each kind of process serving the path, from the
 *    kernel's counters (bench/proc-cpu.ts: `/proc/<pid>/stat` utime + stime over each
 *    segment, the counters' requests excluded, divided by the requests it completed): the
 *    workerd running the Worker ("worker"), wrangler's proxy workerd in front of it
 *    ("proxy") and wrangler's node processes ("node": the inspector that forwards console
 *    output, the dev server). Work a request leaves for later (the `Stats` flush, alarms)
 *    runs while other paths have their turn: each path's CPU and counts outside its own
 *    segments are added per request ("deferred", printed under each table; the
 *    pass-through's shows the idle CPU of a workerd with nothing to do).
 * 2. Far Durable Objects: the pass-through, the DO limiter and tollbooth (d) with every
 *    Durable Object call delayed by FAR_DELAY_MS (default 25) in the same wrappers;
 *    FAR_ROUNDS rounds (default 3) of FAR_SEGMENT_MS (default SEGMENT_MS). Same table.
 * 3. Without `wrangler dev`: the same Workers built as they would be uploaded
 *    (`wrangler deploy --dry-run --outdir`), run by workerd as Miniflare starts it
 *    (bench/miniflare-worker.ts: the same bindings, derived from the same wrangler configs;
 *    no proxy, no inspector; console lines counted and dropped), MF_ROUNDS rounds
 *    (default 4) of MF_SEGMENT_MS (default SEGMENT_MS), 1 and 16 clients: the pass-through,
 *    the DO limiter, tollbooth, + origin ceiling, and tollbooth with one part switched off
 *    at a time — the decision log, the network ceiling binding, the `Stats` binding (a
 *    config without it), the `Stats` flushes (`TOLLBOOTH_METRICS_FLUSH_MS=0`), the verified
 *    identity (policy `identity.strategies: ["ip"]`: no API-key hashing or lookup; every
 *    client is then one caller) — and all of them at once. Its workerd CPU per request is
 *    the figure the CPU target and the cost model use; the attribution table gives
 *    tollbooth − pass-through and what each part adds. The origin proof has no switch.
 * 4. The cost model (bench/cost.ts, prices with their sources in bench/prices.ts): per path
 *    of step 3, dollars per million admitted requests on the Workers Paid plan from the
 *    operations counted per request (Workers request, CPU ms, Durable Object requests —
 *    calls, `Stats` flushes, alarms — and duration, SQLite rows written, KV reads, log
 *    events — the invocation log plus each console line — and Analytics Engine data
 *    points), and a month of 10 M, 100 M and 1 B requests (included amounts subtracted,
 *    $5 base). Durable Object duration is estimated as the p50 latency one DO call adds
 *    (DO limiter − pass-through, 1 client, step 3) per DO request: an upper bound.
 * 5. The per-stage profile of the hot path, in-process in Node (bench/hot-path.ts; no
 *    target: Node's WebCrypto hops to a thread that workerd does not), and the Worker
 *    bundle gzipped (bench/bundle.ts).
 * Then one PASS/FAIL line per target:
 * - workerd CPU per admitted request, tollbooth ≤ pass-through + 0.15 ms (step 3, 1 and 16 clients);
 * - cost per million admitted requests, tollbooth ≤ 1.25 × pass-through and below the DO
 *   limiter (step 4, 1 and 16 clients);
 * - p50 ≤ 1.15 × pass-through with 1 client, throughput ≥ 0.8 × pass-through with 16
 *   clients, ≤ 0.1 Durable Object calls per admitted request with 16 clients, and with the
 *   origin ceiling on with 1 client (step 1; `ONLY=origin-ceiling` runs that segment alone);
 * - bundle ≤ 85 KiB gzipped.
 * Exits 1 when a target fails. ROUNDS (default 6), SEGMENT_MS (default 1500), FAR_ROUNDS,
 * FAR_SEGMENT_MS, FAR_DELAY_MS, MF_ROUNDS and MF_SEGMENT_MS set the length (~8 minutes in
 * all); DECISION_LOG=off turns tollbooth's decision log line off in every tollbooth path.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEverything } from "../scripts/stack/everything.ts";
import { type Gateway, startGateway } from "../scripts/stack/gateway.ts";
import { GZIP_TARGET_BYTES, measureBundle } from "./bundle.ts";
import { type Cost, costPerMillion, monthlyCost, type Ops } from "./cost.ts";
import { type BenchCounts, DO_CALLS_PATH } from "./far-tollbooth/far.ts";
import { measureHotPath } from "./hot-path.ts";
import { type McpSession, openSession } from "./mcp-http.ts";
import { type Bundle, bundleWorker, type MiniflareWorker, startMiniflareWorker } from "./miniflare-worker.ts";
import { BASE_USD_PER_MONTH, PRICES, type PriceKey } from "./prices.ts";
import { type CpuSample, type ProcessSet, sampleCpu, wranglerProcesses } from "./proc-cpu.ts";
import { farTollboothConfig } from "./workerd-cpu.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 6);
const SEGMENT_MS = Number(process.env.SEGMENT_MS ?? 1500);
const FAR_ROUNDS = Number(process.env.FAR_ROUNDS ?? 3);
const FAR_SEGMENT_MS = Number(process.env.FAR_SEGMENT_MS ?? SEGMENT_MS);
const FAR_DELAY_MS = Number(process.env.FAR_DELAY_MS ?? 25);
const MF_ROUNDS = Number(process.env.MF_ROUNDS ?? 4);
const MF_SEGMENT_MS = Number(process.env.MF_SEGMENT_MS ?? SEGMENT_MS);
const CONCURRENCY = [1, 16] as const;
/** Targets (docs/performance.md). */
const MAX_CPU_OVER_PASSTHROUGH_MS = 0.15;
const MAX_COST_RATIO_TO_PASSTHROUGH = 1.25;
const MAX_P50_RATIO_1_CLIENT = 1.15;
const MIN_THROUGHPUT_RATIO_16_CLIENTS = 0.8;
const MAX_DO_CALLS_PER_REQUEST = 0.1;
/** `ONLY=origin-ceiling` runs step 1's origin-ceiling segment alone (`originCeilingOnly`). */
const ONLY = process.env.ONLY;
/** Requests per month of the projection. */
const MONTHLY_REQUESTS = [10e6, 100e6, 1e9] as const;

const ZERO_COUNTS: BenchCounts = { calls: 0, originCalls: 0, statsCalls: 0, kvReads: 0, aePoints: 0, rowsWritten: 0, alarms: 0 };
const ZERO_CPU: CpuSample = { worker: 0, proxy: 0, node: 0 };

/** What one path accumulated at one concurrency over its measured segments. */
interface Acc {
  latencies: number[];
  busyMs: number;
  counts: BenchCounts;
  cpu: CpuSample;
  logLines: number;
}

/** One way to reach the origin. */
interface Path {
  name: string;
  url: string;
  /** Base URL of the counting wrapper (`GET /__bench/do-calls`); null: the path has none. */
  counter: string | null;
  /** The processes serving it, whose CPU is read; null: not measured (the origin itself). */
  procs: ProcessSet | null;
  /** Log lines the Worker wrote so far (Miniflare only); null: not counted. */
  logLines: (() => number) | null;
  /** Whether each request calls the network ceiling binding (priced at $0, listed in the cost model). */
  rateLimited: boolean;
  sessions: Map<number, McpSession[]>;
  acc: Map<number, Acc>;
}

/** Figures of one path at one concurrency. */
interface Stats {
  p50: number;
  p99: number;
  rps: number;
  n: number;
  /** Counted operations per completed request; null when the path has no counter. */
  per: BenchCounts | null;
  /** CPU ms per completed request, by kind of process; null when not measured. */
  cpu: CpuSample | null;
  /** Log lines per completed request; null when not counted. */
  logLines: number | null;
}

/** What a path did outside its own segments, per request it completed (see {@link run}). */
interface Deferred {
  counts: BenchCounts;
  cpu: CpuSample;
  logLines: number;
}

/** A run's figures (deferred work included), by `${path}/${clients}`, and each path's deferred work alone. */
interface Run {
  stats: Map<string, Stats>;
  deferred: Map<string, Deferred>;
}

/** Latency quantile of a sorted list. */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** One echo call; throws unless the origin's answer came back. @returns latency, ms */
async function echo(session: McpSession, i: number): Promise<number> {
  const t0 = performance.now();
  const reply = await session.request("tools/call", { name: "echo", arguments: { message: `m${i}` } });
  const ms = performance.now() - t0;
  if (reply.status !== 200 || !reply.text.includes(`Echo: m${i}`))
    throw new Error(`echo through ${session.url}: HTTP ${reply.status}: ${reply.text.slice(0, 300)}`);
  return ms;
}

/** `clients` closed-loop clients on `path` for `ms`. @returns latencies and elapsed ms */
async function segment(path: Path, clients: number, ms: number): Promise<{ latencies: number[]; elapsedMs: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + ms;
  let i = 0;
  await Promise.all(
    path.sessions.get(clients)!.map(async (s) => {
      while (performance.now() < end) latencies.push(await echo(s, i++));
    }),
  );
  return { latencies, elapsedMs: performance.now() - start };
}

/** Everything the path's wrapper has counted so far (zeros without a wrapper). */
async function countsSoFar(path: Path): Promise<BenchCounts> {
  if (path.counter === null) return ZERO_COUNTS;
  const res = await fetch(path.counter + DO_CALLS_PATH);
  const body = (await res.json().catch(() => null)) as Partial<BenchCounts> | null;
  if (!res.ok || typeof body?.calls !== "number")
    throw new Error(`${path.name}: GET ${DO_CALLS_PATH}: HTTP ${res.status}: ${JSON.stringify(body)}`);
  const counts = { ...ZERO_COUNTS };
  for (const k of Object.keys(ZERO_COUNTS) as Array<keyof BenchCounts>) counts[k] = typeof body[k] === "number" ? body[k] : 0;
  return counts;
}

const cpuOf = (path: Path): CpuSample => (path.procs === null ? ZERO_CPU : sampleCpu(path.procs));
const minus = <T extends object>(a: T, b: T): T =>
  Object.fromEntries(Object.entries(a).map(([k, v]) => [k, (v as number) - (b as Record<string, number>)[k]!])) as T;
const plus = <T extends object>(a: T, b: T): T =>
  Object.fromEntries(Object.entries(a).map(([k, v]) => [k, (v as number) + (b as Record<string, number>)[k]!])) as T;
const scaled = <T extends object>(a: T, by: number): T =>
  Object.fromEntries(Object.entries(a).map(([k, v]) => [k, (v as number) * by])) as T;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Milliseconds waited after the last segment, so work a request leaves for later (the `Stats` flush, default every 5 s; alarms) is done and counted. */
const DEFERRED_SETTLE_MS = 6_000;

/**
 * Open every path's sessions, then run the alternating segments (one warm-up round).
 *
 * Around each segment: the wrapper's counts, the CPU of the path's processes and its log
 * lines are read; after the segment `settleMs` pass first, so what a request leaves to
 * `waitUntil` lands in its own segment. The counter's own request is outside the CPU window
 * (counts read before the CPU at the start, after it at the end).
 *
 * Work a request leaves for later — the `Stats` flush (every 5 s per isolate), alarms — runs
 * while other paths have their turn. It is counted as the path's "deferred" work: what its
 * counters and processes added outside its own segments, from before its first segment to
 * `DEFERRED_SETTLE_MS` after the last, divided by every request it completed (warm-up
 * included), and added to each concurrency's figures (CPU: the worker's only; wrangler's
 * proxy and node processes tick on their own). It also holds the path's idle CPU (its
 * workerd with nothing to do, and the counter's requests): the pass-through's deferred CPU
 * shows how much that is.
 */
async function run(
  paths: Path[],
  rounds: number,
  segmentMs: number,
  settleMs: number,
  keyOf: (k: number, i: number) => string,
): Promise<Run> {
  for (const p of paths) {
    for (const k of CONCURRENCY) {
      const sessions: McpSession[] = [];
      for (let i = 0; i < k; i++) sessions.push(await openSession(p.url, { "x-api-key": keyOf(k, i) }));
      p.sessions.set(k, sessions);
      p.acc.set(k, { latencies: [], busyMs: 0, counts: { ...ZERO_COUNTS }, cpu: { ...ZERO_CPU }, logLines: 0 });
    }
  }
  /** Per path: totals at the start, and the sums over every own segment (warm-up included). */
  const start = new Map<string, { counts: BenchCounts; cpu: CpuSample; logs: number }>();
  const own = new Map<string, { counts: BenchCounts; cpu: CpuSample; logs: number; requests: number }>();
  for (const p of paths) {
    start.set(p.name, { counts: await countsSoFar(p), cpu: cpuOf(p), logs: p.logLines?.() ?? 0 });
    own.set(p.name, { counts: { ...ZERO_COUNTS }, cpu: { ...ZERO_CPU }, logs: 0, requests: 0 });
  }
  for (let round = -1; round < rounds; round++) {
    for (const k of CONCURRENCY) {
      for (let j = 0; j < paths.length; j++) {
        const p = paths[(j + Math.max(0, round)) % paths.length]!;
        const countsBefore = await countsSoFar(p);
        const cpuBefore = cpuOf(p);
        const logsBefore = p.logLines?.() ?? 0;
        const r = await segment(p, k, segmentMs);
        await sleep(settleMs);
        const cpuAfter = cpuOf(p);
        const logsAfter = p.logLines?.() ?? 0;
        const countsAfter = await countsSoFar(p);
        const seg = { counts: minus(countsAfter, countsBefore), cpu: minus(cpuAfter, cpuBefore), logs: logsAfter - logsBefore };
        const o = own.get(p.name)!;
        own.set(p.name, {
          counts: plus(o.counts, seg.counts),
          cpu: plus(o.cpu, seg.cpu),
          logs: o.logs + seg.logs,
          requests: o.requests + r.latencies.length,
        });
        if (round < 0) continue; // warm-up
        const a = p.acc.get(k)!;
        a.latencies.push(...r.latencies);
        a.busyMs += r.elapsedMs;
        a.counts = plus(a.counts, seg.counts);
        a.cpu = plus(a.cpu, seg.cpu);
        a.logLines += seg.logs;
      }
    }
  }
  await sleep(DEFERRED_SETTLE_MS);
  const deferred = new Map<string, Deferred>();
  for (const p of paths) {
    const s0 = start.get(p.name)!;
    const o = own.get(p.name)!;
    const cpu = minus(minus(cpuOf(p), s0.cpu), o.cpu);
    const logs = (p.logLines?.() ?? 0) - s0.logs - o.logs;
    const counts = minus(minus(await countsSoFar(p), s0.counts), o.counts);
    deferred.set(p.name, { counts: scaled(counts, 1 / o.requests), cpu: scaled(cpu, 1 / o.requests), logLines: logs / o.requests });
  }
  const stats = new Map<string, Stats>();
  for (const p of paths) {
    const d = deferred.get(p.name)!;
    for (const k of CONCURRENCY) {
      const a = p.acc.get(k)!;
      const l = a.latencies.sort((x, y) => x - y);
      stats.set(`${p.name}/${k}`, {
        p50: quantile(l, 0.5),
        p99: quantile(l, 0.99),
        rps: l.length / (a.busyMs / 1000),
        n: l.length,
        per: p.counter === null ? null : plus(scaled(a.counts, 1 / l.length), d.counts),
        // Deferred CPU for the worker only: wrangler's proxy and node processes tick on their own between segments.
        cpu: p.procs === null ? null : plus(scaled(a.cpu, 1 / l.length), { ...ZERO_CPU, worker: d.cpu.worker }),
        logLines: p.logLines === null ? null : a.logLines / l.length + d.logLines,
      });
    }
  }
  return { stats, deferred };
}

const f = (x: number, w = 8, d = 2) => x.toFixed(d).padStart(w);
const plural = (k: number) => `${k} client${k > 1 ? "s" : ""}`;
const dash = (w: number) => "—".padStart(w);

/**
 * The table of one run, per concurrency, then `extra(k)`'s lines. `wrangler`: CPU columns
 * for wrangler's proxy and node processes too (else the worker's, and log lines per request).
 */
function printTable(paths: Path[], r: Run, wrangler: boolean, extra: (k: number, s: (name: string) => Stats) => string[]): void {
  for (const k of CONCURRENCY) {
    const s = (name: string) => r.stats.get(`${name}/${k}`)!;
    const cpuHead = wrangler ? "  worker CPU   proxy CPU    node CPU" : "  workerd CPU  log lines";
    console.log(`${plural(k).padEnd(22)}  p50 ms    p99 ms     req/s  requests  DO calls  Stats calls  rows written${cpuHead}`);
    console.log(
      `${"".padEnd(22)}${"".padStart(38)}   per req      per req       per req${wrangler ? "     ms/req      ms/req      ms/req" : "       ms/req    per req"}`,
    );
    for (const p of paths) {
      const x = s(p.name);
      const per = x.per;
      const cols = [
        per === null ? dash(10) : f(per.calls, 10, 3),
        per === null ? dash(13) : f(per.statsCalls, 13, 4),
        per === null ? dash(14) : f(per.rowsWritten, 14, 3),
      ].join("");
      const cpu =
        x.cpu === null
          ? wrangler
            ? dash(12) + dash(12) + dash(12)
            : dash(13) + dash(11)
          : wrangler
            ? `${f(x.cpu.worker, 12, 3)}${f(x.cpu.proxy, 12, 3)}${f(x.cpu.node, 12, 3)}`
            : `${f(x.cpu.worker, 13, 3)}${x.logLines === null ? dash(11) : f(x.logLines, 11, 3)}`;
      console.log(`${p.name.padEnd(22)}${f(x.p50, 8)}${f(x.p99, 10)}${f(x.rps, 10, 0)}${String(x.n).padStart(10)}${cols}${cpu}`);
    }
    for (const line of extra(k, s)) console.log(line);
    console.log("");
  }
  const deferred = paths
    .filter((p) => p.procs !== null || p.counter !== null)
    .map((p) => {
      const d = r.deferred.get(p.name)!;
      const calls =
        p.counter === null
          ? ""
          : `, ${d.counts.statsCalls.toFixed(4)} Stats + ${(d.counts.calls + d.counts.alarms).toFixed(4)} other DO calls, ${d.counts.rowsWritten.toFixed(3)} rows`;
      return `${p.name} ${d.cpu.worker.toFixed(3)} ms${calls}`;
    });
  console.log(`deferred work (outside each path's own segments, per request; included above): ${deferred.join("; ")}\n`);
}

/** `a / b` as p50, p99 and throughput ratios (and worker CPU difference, when measured). */
function ratios(label: string, a: Stats, b: Stats): string {
  const cpu =
    a.cpu && b.cpu ? `  worker CPU ${a.cpu.worker - b.cpu.worker >= 0 ? "+" : ""}${(a.cpu.worker - b.cpu.worker).toFixed(3)} ms/req` : "";
  return `${label.padEnd(26)}p50 ${f(a.p50 / b.p50, 5)}×  p99 ${f(a.p99 / b.p99, 5)}×  throughput ${f(a.rps / b.rps, 5)}×${cpu}`;
}

/** A new path (nothing measured yet). */
function newPath(
  name: string,
  base: string,
  counted: boolean,
  procs: ProcessSet | null,
  logLines: (() => number) | null = null,
  rateLimited = false,
): Path {
  return { name, url: `${base}/mcp`, counter: counted ? base : null, procs, logLines, rateLimited, sessions: new Map(), acc: new Map() };
}

/** The processes of a `wrangler dev` started by scripts/stack/gateway.ts. */
const wranglerOf = (gw: Gateway): ProcessSet => wranglerProcesses(Number(new URL(gw.url).port));

/** Durable Object invocations billed per admitted request: calls (the `Stats` flush included) and alarms. */
const invocations = (per: BenchCounts): number => per.calls + per.statsCalls + per.alarms;

/** The origin-ceiling target's line: invocations per admitted request with the origin ceiling on, 1 client, and their parts. */
function originCeilingTarget(o: Stats): string {
  const p = o.per!;
  return `≤ ${MAX_DO_CALLS_PER_REQUEST} Durable Object invocations per admitted request with the origin ceiling on, 1 client (wrangler dev): ${invocations(p).toFixed(3)} — ${p.calls.toFixed(3)} calls (the origin ceiling's ${p.originCalls.toFixed(3)}), ${p.statsCalls.toFixed(3)} Stats flushes, ${p.alarms.toFixed(3)} alarms (${o.rps.toFixed(0)} req/s per caller)`;
}

/**
 * The operations a path bills per admitted request, from step 3's counts.
 * @param doActiveMs milliseconds a Durable Object is active per request to it (estimate)
 */
function opsOf(path: Path, s: Stats, doActiveMs: number): Ops {
  const per = s.per ?? ZERO_COUNTS;
  const doRequests = invocations(per);
  return {
    workerRequests: 1,
    cpuMs: s.cpu?.worker ?? 0,
    doRequests,
    doActiveSeconds: (doRequests * doActiveMs) / 1000,
    doRowsWritten: per.rowsWritten,
    kvReads: per.kvReads,
    // The invocation log, plus each console line.
    logEvents: 1 + (s.logLines ?? 0),
    aePoints: per.aePoints,
    rateLimitCalls: path.rateLimited ? 1 : 0,
  };
}

const usd = (x: number, w = 9) => `$${x < 10 ? x.toFixed(4) : x.toFixed(2)}`.padStart(w);
const COST_COLUMNS: Array<[PriceKey, string]> = [
  ["workerRequests", "requests"],
  ["workerCpuMs", "CPU"],
  ["doRequests", "DO req"],
  ["doDuration", "DO dur"],
  ["doRowsWritten", "DO rows"],
  ["kvReads", "KV"],
  ["logEvents", "logs"],
  ["aePoints", "AE"],
];

/** The prices in use, one line each, with where each was read. */
function printPrices(): void {
  console.log(`prices (Workers Paid, bench/prices.ts; base $${BASE_USD_PER_MONTH}/month):`);
  for (const p of Object.values(PRICES)) {
    console.log(
      `  ${p.item.padEnd(38)} $${String(p.usdPerMillion).padEnd(5)} per M ${p.unit}s beyond ${(p.includedPerMonth / 1e6).toLocaleString("en")} M/month  [${p.from}, read ${p.read}] ${p.url}`,
    );
  }
  console.log("");
}

/** Cost per million admitted requests of each path, by item, at one concurrency. */
function printCosts(k: number, rows: Array<[string, Ops, Cost]>): void {
  console.log(
    `${plural(k).padEnd(22)}     $/M admitted  ${COST_COLUMNS.map(([, h]) => h.padStart(9)).join("")}   CPU ms  DO req  rows  logs`,
  );
  for (const [name, ops, cost] of rows) {
    console.log(
      `${name.padEnd(22)}${usd(cost.usd, 17)}  ${COST_COLUMNS.map(([key]) => usd(cost.byItem[key])).join("")}${f(ops.cpuMs, 9, 3)}${f(ops.doRequests, 8, 3)}${f(ops.doRowsWritten, 6, 2)}${f(ops.logEvents, 6, 2)}`,
    );
  }
}

const started = performance.now();
const origin = await startEverything();
/** The clients' API keys: issued (listed in the policy), so each client is its own verified caller. */
const keyOf = (k: number, i: number) => `bench-${k}-${i}`;
const apiKeys = CONCURRENCY.flatMap((k) =>
  Array.from({ length: k }, (_, i) => ({ sha256: createHash("sha256").update(keyOf(k, i)).digest("hex"), name: keyOf(k, i) })),
);
const generous = {
  bucket: { capacity: 1_000_000, refillPerSecond: 100_000 },
  ceiling: { capacity: 1_000_000, refillPerSecond: 100_000 },
  identity: { strategies: ["api-key", "ip"], apiKeys },
};
const originCeiling = { capacity: 1_000_000, refillPerSecond: 100_000 };
/** The policy with `identity.strategies: ["ip"]`: no API key hashed or looked up (all clients are one caller, with room for all their sessions). */
const ipOnly = { ...generous, identity: { strategies: ["ip"] }, limits: { sessions: 100 } };
// The network ceiling binding stays in place (its call is part of the cost), with room for every request of the run.
const configDir = await mkdtemp(join(tmpdir(), "tollbooth-bench-far-"));
const roomy = { limit: 1_000_000, period: 60 } as const;
const withNetwork = await farTollboothConfig(configDir, "network-limit", roomy);
const withoutNetwork = await farTollboothConfig(configDir, "no-network-limit", null);
const withoutStats = await farTollboothConfig(configDir, "no-stats", roomy, false);
const allOff = await farTollboothConfig(configDir, "all-off", null, false);
const passthroughConfig = fileURLToPath(new URL("passthrough-worker/wrangler.toml", import.meta.url));
const farLimiterConfig = fileURLToPath(new URL("far-do-limiter/wrangler.toml", import.meta.url));
/** DECISION_LOG=off runs tollbooth without its decision log line (`TOLLBOOTH_DECISION_LOG`); default: as deployed, on. */
const decisionLog: Record<string, string> = process.env.DECISION_LOG ? { TOLLBOOTH_DECISION_LOG: process.env.DECISION_LOG } : {};
const local = { DO_DELAY_MS: "0", ...decisionLog };
const far = { DO_DELAY_MS: String(FAR_DELAY_MS), ...decisionLog };
const workers: Gateway[] = [];
const miniflares: MiniflareWorker[] = [];
const bundles: Bundle[] = [];
/**
 * `ONLY=origin-ceiling`: step 1's tollbooth and + origin ceiling paths alone (ROUNDS rounds of
 * SEGMENT_MS, 1 and 16 clients), with the origin ceiling's own Durable Object calls (its
 * shards and their root) per request, and the target: ≤ MAX_DO_CALLS_PER_REQUEST Durable
 * Object invocations (calls, `Stats` flushes and alarms: each is billed) per admitted request
 * with the origin ceiling on, 1 client (each client is its own caller: at 1 client, far more
 * than 10 requests/s per caller).
 * @returns whether the target failed
 */
async function originCeilingOnly(): Promise<boolean> {
  const [gated, ceilinged] = await Promise.all([
    startGateway({ originUrl: origin.url, config: withNetwork, policy: generous, vars: local }),
    startGateway({ originUrl: origin.url, config: withNetwork, policy: { ...generous, originCeiling }, vars: local }),
  ]);
  workers.push(gated, ceilinged);
  const paths = [
    newPath("tollbooth", gated.url, true, wranglerOf(gated)),
    newPath("+ origin ceiling", ceilinged.url, true, wranglerOf(ceilinged)),
  ];
  const r = await run(paths, ROUNDS, SEGMENT_MS, 50, keyOf);
  console.log(
    `origin ceiling alone: tools/call echo on open sessions, in budget; ${ROUNDS} rounds × ${SEGMENT_MS} ms per path and concurrency, alternating, under wrangler dev\n`,
  );
  printTable(paths, r, true, (k, s) => {
    const o = s("+ origin ceiling");
    return [
      `origin ceiling's own calls (its shards, their root) ${o.per!.originCalls.toFixed(4)} per request, ${o.per!.alarms.toFixed(4)} alarms; ${(o.rps / k).toFixed(0)} req/s per caller`,
    ];
  });
  const o = r.stats.get("+ origin ceiling/1")!;
  const ok = invocations(o.per!) <= MAX_DO_CALLS_PER_REQUEST;
  console.log(`${ok ? "PASS" : "FAIL"}  ${originCeilingTarget(o)}`);
  return !ok;
}

let failed = false;
try {
  if (ONLY === "origin-ceiling") failed = await originCeilingOnly();
  else {
    workers.push(
      ...(await Promise.all([
        startGateway({ originUrl: origin.url, config: passthroughConfig }),
        startGateway({ originUrl: origin.url, config: farLimiterConfig, vars: local }),
        startGateway({ originUrl: origin.url, config: withNetwork, policy: generous, vars: local }),
        startGateway({ originUrl: origin.url, config: withNetwork, policy: { ...generous, originCeiling }, vars: local }),
        startGateway({ originUrl: origin.url, config: withoutNetwork, policy: generous, vars: local }),
        startGateway({ originUrl: origin.url, config: withNetwork, policy: generous, vars: { ...local, TOLLBOOTH_DECISION_LOG: "off" } }),
        startGateway({ originUrl: origin.url, config: farLimiterConfig, vars: far }),
        startGateway({ originUrl: origin.url, config: withNetwork, policy: generous, vars: far }),
      ])),
    );
    const [bare, limiter, gated, ceilinged, unlimited, unlogged, farLimiter, farGated] = workers as [
      Gateway,
      Gateway,
      Gateway,
      Gateway,
      Gateway,
      Gateway,
      Gateway,
      Gateway,
    ];
    const localPaths = [
      newPath("direct to origin", origin.url, false, null),
      newPath("bare pass-through", bare.url, false, wranglerOf(bare)),
      newPath("DO rate limiter", limiter.url, true, wranglerOf(limiter)),
      newPath("tollbooth", gated.url, true, wranglerOf(gated)),
      newPath("+ origin ceiling", ceilinged.url, true, wranglerOf(ceilinged)),
      newPath("− network ceiling", unlimited.url, true, wranglerOf(unlimited)),
      newPath("− decision log", unlogged.url, true, wranglerOf(unlogged)),
    ];
    const farPaths = [
      newPath("bare pass-through", bare.url, false, wranglerOf(bare)),
      newPath("DO rate limiter", farLimiter.url, true, wranglerOf(farLimiter)),
      newPath("tollbooth", farGated.url, true, wranglerOf(farGated)),
    ];

    // Step 3's Workers: built as uploaded, one bundle per Worker (the tollbooth variants differ only in bindings and vars).
    const [passBundle, limiterBundle, tollBundle] = await Promise.all([
      bundleWorker(passthroughConfig),
      bundleWorker(farLimiterConfig),
      bundleWorker(withNetwork),
    ]);
    bundles.push(passBundle, limiterBundle, tollBundle);
    const secret = randomBytes(32).toString("hex");
    const tollVars = (policy: object, more: Record<string, string> = {}) => ({
      ORIGIN_URL: origin.url,
      TOLLBOOTH_SECRET: secret,
      TOLLBOOTH_POLICY: JSON.stringify(policy),
      ...local,
      ...more,
    });
    const mfSpecs: Array<
      [name: string, bundle: Bundle, config: string, vars: Record<string, string>, counted: boolean, rateLimited: boolean]
    > = [
      ["pass-through", passBundle, passthroughConfig, { ORIGIN_URL: origin.url }, false, false],
      ["DO rate limiter", limiterBundle, farLimiterConfig, { ORIGIN_URL: origin.url, DO_DELAY_MS: "0" }, true, false],
      ["tollbooth", tollBundle, withNetwork, tollVars(generous), true, true],
      ["+ origin ceiling", tollBundle, withNetwork, tollVars({ ...generous, originCeiling }), true, true],
      ["− decision log", tollBundle, withNetwork, tollVars(generous, { TOLLBOOTH_DECISION_LOG: "off" }), true, true],
      ["− network ceiling", tollBundle, withoutNetwork, tollVars(generous), true, false],
      ["− Stats binding", tollBundle, withoutStats, tollVars(generous), true, true],
      ["− Stats flushes", tollBundle, withNetwork, tollVars(generous, { TOLLBOOTH_METRICS_FLUSH_MS: "0" }), true, true],
      ["identity: ip only", tollBundle, withNetwork, tollVars(ipOnly), true, true],
      ["all switches off", tollBundle, allOff, tollVars(ipOnly, { TOLLBOOTH_DECISION_LOG: "off" }), true, false],
    ];
    const mfPaths: Path[] = [];
    for (const [name, bundle, config, vars, counted, rateLimited] of mfSpecs) {
      const w = await startMiniflareWorker({ bundle, config, vars });
      miniflares.push(w);
      mfPaths.push(newPath(name, w.url, counted, { worker: w.pids, proxy: [], node: [] }, w.logLines, rateLimited));
    }
    const startupS = (performance.now() - started) / 1000;

    const localRun = await run(localPaths, ROUNDS, SEGMENT_MS, 50, keyOf);
    const localStats = localRun.stats;
    console.log(
      `tools/call echo on open sessions, in budget; ${ROUNDS} rounds × ${SEGMENT_MS} ms per path and concurrency, alternating (start-up ${startupS.toFixed(1)} s)`,
    );
    console.log(
      `1. local Durable Objects under wrangler dev (DO calls counted by the wrappers, no delay); CPU from /proc of each path's processes\n`,
    );
    printTable(localPaths, localRun, true, (_k, s) => {
      const t = s("tollbooth");
      const o = s("+ origin ceiling");
      const n = s("− network ceiling");
      const d = s("− decision log");
      return [
        ratios("tollbooth / pass-through", t, s("bare pass-through")),
        ratios("tollbooth / DO limiter", t, s("DO rate limiter")),
        ratios("tollbooth / direct", t, s("direct to origin")),
        `origin ceiling layer      p50 +${f(o.p50 - t.p50, 5)} ms  (${f(o.p50 / t.p50, 5)}× tollbooth); its own DO calls (shards, root) ${o.per!.originCalls.toFixed(4)} per request`,
        `network ceiling layer     p50 +${f(t.p50 - n.p50, 5)} ms  (${f(t.p50 / n.p50, 5)}× tollbooth without it)`,
        `decision log line         p50 +${f(t.p50 - d.p50, 5)} ms; CPU per request: worker +${(t.cpu!.worker - d.cpu!.worker).toFixed(3)} ms, wrangler's node +${(t.cpu!.node - d.cpu!.node).toFixed(3)} ms (console forwarded through the inspector)`,
      ];
    });

    const farRun = await run(farPaths, FAR_ROUNDS, FAR_SEGMENT_MS, 2 * FAR_DELAY_MS + 50, keyOf);
    console.log(
      `2. far Durable Object (${FAR_DELAY_MS} ms per call); ${FAR_ROUNDS} rounds × ${FAR_SEGMENT_MS} ms per path and concurrency, alternating\n`,
    );
    printTable(farPaths, farRun, true, (_k, s) => {
      const t = s("tollbooth");
      return [ratios("tollbooth / DO limiter", t, s("DO rate limiter")), ratios("tollbooth / pass-through", t, s("bare pass-through"))];
    });

    const mfRun = await run(mfPaths, MF_ROUNDS, MF_SEGMENT_MS, 50, keyOf);
    const mf = (name: string, k: number) => mfRun.stats.get(`${name}/${k}`)!;
    console.log(
      `3. without wrangler dev: the built bundles under workerd as Miniflare starts it (no proxy, no inspector); ${MF_ROUNDS} rounds × ${MF_SEGMENT_MS} ms, alternating\n`,
    );
    printTable(mfPaths, mfRun, false, (_k, s) => [
      ratios("tollbooth / pass-through", s("tollbooth"), s("pass-through")),
      ratios("tollbooth / DO limiter", s("tollbooth"), s("DO rate limiter")),
    ]);

    // 4. The cost model, for every path of step 3 (the attribution below prices each part too).
    const doActiveMs = Math.max(0, mf("DO rate limiter", 1).p50 - mf("pass-through", 1).p50);
    const costs = new Map<string, { ops: Ops; cost: Cost }>();
    for (const k of CONCURRENCY) {
      for (const path of mfPaths) {
        const ops = opsOf(path, mf(path.name, k), doActiveMs);
        costs.set(`${path.name}/${k}`, { ops, cost: costPerMillion(ops) });
      }
    }
    const dollars = (name: string, k: number) => costs.get(`${name}/${k}`)!.cost.usd;
    const cpuW = (name: string, k: number) => mf(name, k).cpu!.worker;

    console.log(
      "attribution under Miniflare: what each part of tollbooth adds per request — workerd CPU (ms) and cost ($ per million, step 4)",
    );
    const parts: Array<[string, string]> = [
      ["decision log line", "− decision log"],
      ["network ceiling binding", "− network ceiling"],
      ["Stats binding (aggregate + flushes)", "− Stats binding"],
      ["Stats flushes alone", "− Stats flushes"],
      ["verified identity (api-key → ip only)", "identity: ip only"],
    ];
    const counted = parts.filter(([label]) => label !== "Stats flushes alone");
    console.log(
      `${"".padEnd(52)}${CONCURRENCY.map((k) => `CPU ${plural(k)}`.padStart(16)).join("")}${CONCURRENCY.map((k) => `$/M ${plural(k)}`.padStart(16)).join("")}`,
    );
    const row = (label: string, diff: (value: (name: string, k: number) => number, k: number) => number) =>
      console.log(
        `${label.padEnd(52)}${CONCURRENCY.map((k) => f(diff(cpuW, k), 16, 3)).join("")}${CONCURRENCY.map((k) => f(diff(dollars, k), 16, 4)).join("")}`,
      );
    row("tollbooth − pass-through (all of it)", (v, k) => v("tollbooth", k) - v("pass-through", k));
    for (const [label, without] of parts) row(`  ${label}`, (v, k) => v("tollbooth", k) - v(without, k));
    row("  sum of those (Stats flushes counted once)", (v, k) =>
      counted.reduce((a, [, without]) => a + v("tollbooth", k) - v(without, k), 0),
    );
    row("  all of them off at once", (v, k) => v("tollbooth", k) - v("all switches off", k));
    row("  the rest: all switches off − pass-through", (v, k) => v("all switches off", k) - v("pass-through", k));
    console.log(
      `${"under wrangler dev (step 1), CPU ms per request:".padEnd(52)}${CONCURRENCY.map((k) => plural(k).padStart(16)).join("")}`,
    );
    const wrow = (label: string, value: (k: number) => number) =>
      console.log(`${label.padEnd(52)}${CONCURRENCY.map((k) => f(value(k), 16, 3)).join("")}`);
    const wdev = (name: string, k: number) => localStats.get(`${name}/${k}`)!.cpu!;
    wrow("  tollbooth − pass-through, worker", (k) => wdev("tollbooth", k).worker - wdev("bare pass-through", k).worker);
    wrow(
      "  tollbooth − pass-through, wrangler's proxy + node",
      (k) =>
        wdev("tollbooth", k).proxy + wdev("tollbooth", k).node - wdev("bare pass-through", k).proxy - wdev("bare pass-through", k).node,
    );
    wrow("  decision log line, worker", (k) => wdev("tollbooth", k).worker - wdev("− decision log", k).worker);
    wrow("  decision log line, wrangler's node (inspector)", (k) => wdev("tollbooth", k).node - wdev("− decision log", k).node);
    console.log(
      'no switch (so in "the rest"): the origin proof (Content-Digest SHA-256 + HMAC-SHA256 + two headers, workers/proxy.ts; a switch would be',
    );
    console.log(
      "an mcpProxy option that skips contentDigest/hmac and the headers); the identity work the ip strategy still does (CF-Connecting-IP →",
    );
    console.log(
      "network, also the network ceiling's key); the body read, parse and cost; the caller's object and its lease; Hono; the decision record.\n",
    );

    printPrices();
    console.log(
      `4. cost per million admitted requests (operations counted in step 3; DO duration: ${doActiveMs.toFixed(2)} ms active per DO request at 128 MB, the p50 one DO call adds)`,
    );
    const costPaths = ["pass-through", "DO rate limiter", "tollbooth", "+ origin ceiling"];
    for (const k of CONCURRENCY) {
      printCosts(
        k,
        costPaths.map((name) => [name, costs.get(`${name}/${k}`)!.ops, costs.get(`${name}/${k}`)!.cost]),
      );
      const t = costs.get(`tollbooth/${k}`)!.cost.usd;
      console.log(
        `tollbooth / pass-through ${f(t / costs.get(`pass-through/${k}`)!.cost.usd, 5)}×   tollbooth / DO limiter ${f(t / costs.get(`DO rate limiter/${k}`)!.cost.usd, 5)}×\n`,
      );
    }
    const projK = 16;
    console.log(
      `a month on Workers Paid ($${BASE_USD_PER_MONTH} base, included amounts subtracted; operations per request of ${plural(projK)})`,
    );
    console.log(
      `${"".padEnd(22)}${MONTHLY_REQUESTS.map((n) => `${n >= 1e9 ? `${n / 1e9} B` : `${n / 1e6} M`} req/month`.padStart(18)).join("")}`,
    );
    for (const name of costPaths) {
      const ops = costs.get(`${name}/${projK}`)!.ops;
      console.log(`${name.padEnd(22)}${MONTHLY_REQUESTS.map((n) => usd(monthlyCost(ops, n).usd, 18)).join("")}`);
    }
    console.log(
      "(CPU is workerd's for the whole path locally, Durable Objects included — on Cloudflare an object's CPU is billed as its duration, not as Worker CPU;",
    );
    console.log(
      " log events assume Workers Logs on for every path, head_sampling_rate 1; Analytics Engine is not bound by default: with it, +1 data point per request.)\n",
    );

    // 5. Node profile and bundle.
    const hot = await measureHotPath();
    console.log(
      `5. hot path, in-process (Node ${process.version}), ${hot.iterations} iterations per stage, µs per request (a per-stage profile; no target)`,
    );
    for (const s of [...hot.stages, hot.middleware])
      console.log(`  ${s.name.padEnd(38)} mean ${f(s.meanUs, 7, 1)}  p99 ${f(s.p99Us, 7, 1)}`);
    console.log(`  sum of the non-reference stages ${hot.hotPathUs.toFixed(1)} µs`);
    const bundle = await measureBundle();
    console.log(
      `\nbundle (wrangler deploy --dry-run, minified index.js): ${(bundle.minified.bytes / 1024).toFixed(1)} KiB, gzip -9 ${(bundle.minified.gzipBytes / 1024).toFixed(1)} KiB\n`,
    );

    const targets: Array<[string, boolean]> = [];
    for (const k of CONCURRENCY) {
      const t = mf("tollbooth", k).cpu!.worker;
      const b = mf("pass-through", k).cpu!.worker;
      targets.push([
        `workerd CPU per admitted request, tollbooth ≤ pass-through + ${MAX_CPU_OVER_PASSTHROUGH_MS * 1000} µs, ${plural(k)} (Miniflare): ${t.toFixed(3)} ms vs ${(b + MAX_CPU_OVER_PASSTHROUGH_MS).toFixed(3)} ms (+${((t - b) * 1000).toFixed(0)} µs)`,
        t <= b + MAX_CPU_OVER_PASSTHROUGH_MS,
      ]);
    }
    for (const k of CONCURRENCY) {
      const t = costs.get(`tollbooth/${k}`)!.cost.usd;
      const b = costs.get(`pass-through/${k}`)!.cost.usd;
      const d = costs.get(`DO rate limiter/${k}`)!.cost.usd;
      targets.push([
        `cost per million admitted, tollbooth ≤ ${MAX_COST_RATIO_TO_PASSTHROUGH} × pass-through and < DO limiter, ${plural(k)}: $${t.toFixed(4)} vs $${(MAX_COST_RATIO_TO_PASSTHROUGH * b).toFixed(4)} (${(t / b).toFixed(2)}×) and $${d.toFixed(4)}`,
        t <= MAX_COST_RATIO_TO_PASSTHROUGH * b && t < d,
      ]);
    }
    {
      const t = localStats.get("tollbooth/1")!.p50;
      const b = localStats.get("bare pass-through/1")!.p50;
      targets.push([
        `p50 ≤ ${MAX_P50_RATIO_1_CLIENT} × pass-through, 1 client (wrangler dev): ${t.toFixed(2)} ms vs ${(MAX_P50_RATIO_1_CLIENT * b).toFixed(2)} ms (${(t / b).toFixed(2)}×)`,
        t <= MAX_P50_RATIO_1_CLIENT * b,
      ]);
    }
    {
      const t = localStats.get("tollbooth/16")!.rps;
      const b = localStats.get("bare pass-through/16")!.rps;
      targets.push([
        `throughput ≥ ${MIN_THROUGHPUT_RATIO_16_CLIENTS} × pass-through, 16 clients (wrangler dev): ${t.toFixed(0)} req/s vs ${(MIN_THROUGHPUT_RATIO_16_CLIENTS * b).toFixed(0)} req/s (${(t / b).toFixed(2)}×)`,
        t >= MIN_THROUGHPUT_RATIO_16_CLIENTS * b,
      ]);
    }
    {
      const s = localStats.get("tollbooth/16")!;
      const calls = s.per!.calls;
      targets.push([
        `≤ ${MAX_DO_CALLS_PER_REQUEST} Durable Object calls per admitted request, 16 clients (wrangler dev): ${calls.toFixed(3)} (${(s.rps / 16).toFixed(0)} req/s per caller; Miniflare ${mf("tollbooth", 16).per!.calls.toFixed(3)})`,
        calls <= MAX_DO_CALLS_PER_REQUEST,
      ]);
    }
    {
      const o = localStats.get("+ origin ceiling/1")!;
      targets.push([originCeilingTarget(o), invocations(o.per!) <= MAX_DO_CALLS_PER_REQUEST]);
    }
    targets.push([
      `bundle ≤ ${GZIP_TARGET_BYTES / 1024} KiB gzipped: ${(bundle.minified.gzipBytes / 1024).toFixed(1)} KiB`,
      bundle.minified.gzipBytes <= GZIP_TARGET_BYTES,
    ]);
    for (const [line, ok] of targets) console.log(`${ok ? "PASS" : "FAIL"}  ${line}`);
    failed = targets.some(([, ok]) => !ok);
    console.log(`\n(total ${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
} finally {
  await Promise.all(miniflares.map((w) => w.close()));
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(bundles.map((b) => b.remove()));
  await origin.close();
  await rm(configDir, { recursive: true, force: true });
}
if (failed) process.exitCode = 1;
