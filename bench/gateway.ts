/**
 * `npm run bench:gateway`: what tollbooth costs against what a user would otherwise write.
 *
 * One run on this machine, with a real server-everything origin and `wrangler dev` (local
 * workerd) for every Worker:
 * 1. The same MCP workload — `tools/call` echo on an open session, in budget everywhere —
 *    with 1 and 16 concurrent clients (each its own session and `x-api-key`), sent in
 *    alternation (ROUNDS rounds of SEGMENT_MS per path and concurrency, path order rotated
 *    each round, after one warm-up segment each) to:
 *    a. the origin directly;
 *    b. a bare pass-through Worker (bench/passthrough-worker; reference: `wrangler dev`'s
 *       own cost);
 *    c. a pass-through Worker with the rate limiter of Cloudflare's "Build a rate limiter"
 *       Durable Objects example (bench/do-limiter-worker: one DO call per request);
 *    d. tollbooth with a generous policy: every layer of a default deployment (the network
 *       ceiling binding, one reading of the body, a verified identity — issued API keys
 *       listed in the policy, so each client is its own caller — the caller's object, the
 *       origin proof over the body's digest);
 *    e. the same with an origin ceiling (`originCeiling`: one more Durable Object call per
 *       request, to the single `OriginGate`), and f. the same without the network ceiling
 *       binding, so the table shows what each of those layers costs.
 *    For each: p50 / p99 latency (ms) and throughput (requests/s), and the ratios
 *    tollbooth / DO limiter, tollbooth / direct and origin ceiling / tollbooth.
 * 2. The hot path alone, in-process (bench/hot-path.ts): µs per request, per stage and
 *    summed (the target applies to the sum), and the whole middleware in Node.
 * 3. The Worker bundle gzipped (bench/bundle.ts, `wrangler deploy --dry-run`).
 * Then one PASS/FAIL line per target: tollbooth p50 ≤ 1.10 × DO-limiter p50 (1 and 16
 * clients), hot path < 0.2 ms per request, bundle < 100 KiB gzipped. Exits 1 when a target
 * fails. ROUNDS (default 6) and SEGMENT_MS (default 1500) set the length (~2 minutes).
 */
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { startEverything } from "../scripts/stack/everything.ts";
import { startGateway, type Gateway } from "../scripts/stack/gateway.ts";
import { GZIP_BUDGET_BYTES, measureBundle } from "./bundle.ts";
import { HOT_PATH_BUDGET_US, measureHotPath } from "./hot-path.ts";
import { openSession, type McpSession } from "./mcp-http.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 6);
const SEGMENT_MS = Number(process.env.SEGMENT_MS ?? 1500);
const CONCURRENCY = [1, 16] as const;
/** Targets. */
const MAX_RATIO_TO_DO_LIMITER = 1.1;
const MAX_HOT_PATH_US = HOT_PATH_BUDGET_US;

/** One way to reach the origin. */
interface Path {
  name: string;
  url: string;
  /** Sessions by concurrency. */
  sessions: Map<number, McpSession[]>;
  /** Latencies (ms) and busy time (ms) by concurrency. */
  latencies: Map<number, number[]>;
  busyMs: Map<number, number>;
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
  if (reply.status !== 200 || !reply.text.includes(`Echo: m${i}`)) throw new Error(`echo through ${session.url}: HTTP ${reply.status}: ${reply.text.slice(0, 300)}`);
  return ms;
}

/** `clients` closed-loop clients on `path` for SEGMENT_MS. @returns latencies and elapsed ms */
async function segment(path: Path, clients: number): Promise<{ latencies: number[]; elapsedMs: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + SEGMENT_MS;
  let i = 0;
  await Promise.all(
    path.sessions.get(clients)!.map(async (s) => {
      while (performance.now() < end) latencies.push(await echo(s, i++));
    }),
  );
  return { latencies, elapsedMs: performance.now() - start };
}

const started = performance.now();
const origin = await startEverything();
/** The clients' API keys: issued (listed in the policy), so each client is its own verified caller. */
const keyOf = (k: number, i: number) => `bench-${k}-${i}`;
const apiKeys = CONCURRENCY.flatMap((k) => Array.from({ length: k }, (_, i) => ({ sha256: createHash("sha256").update(keyOf(k, i)).digest("hex"), name: keyOf(k, i) })));
const generous = {
  bucket: { capacity: 1_000_000, refillPerSecond: 100_000 },
  ceiling: { capacity: 1_000_000, refillPerSecond: 100_000 },
  identity: { strategies: ["api-key", "ip"], apiKeys },
};
// The network ceiling binding stays in place (its call is part of the cost), with room for every request of the run.
const networkLimit = { limit: 1_000_000, period: 60 } as const;
const workers: Gateway[] = await Promise.all([
  startGateway({ originUrl: origin.url, config: fileURLToPath(new URL("passthrough-worker/wrangler.toml", import.meta.url)) }),
  startGateway({ originUrl: origin.url, config: fileURLToPath(new URL("do-limiter-worker/wrangler.toml", import.meta.url)) }),
  startGateway({ originUrl: origin.url, policy: generous, networkLimit }),
  startGateway({ originUrl: origin.url, policy: { ...generous, originCeiling: { capacity: 1_000_000, refillPerSecond: 100_000 } }, networkLimit }),
  startGateway({ originUrl: origin.url, policy: generous, networkLimit: null }),
]);
const [bare, limiter, gated, ceilinged, unlimited] = workers as [Gateway, Gateway, Gateway, Gateway, Gateway];
let failed = false;
try {
  const paths: Path[] = [
    ["direct to origin", origin.url],
    ["bare pass-through", bare.url],
    ["DO rate limiter", limiter.url],
    ["tollbooth", gated.url],
    ["+ origin ceiling", ceilinged.url],
    ["− network ceiling", unlimited.url],
  ].map(([name, base]) => ({ name: name!, url: `${base}/mcp`, sessions: new Map(), latencies: new Map(), busyMs: new Map() }));
  for (const p of paths) {
    for (const k of CONCURRENCY) {
      const sessions: McpSession[] = [];
      for (let i = 0; i < k; i++) sessions.push(await openSession(p.url, { "x-api-key": keyOf(k, i) }));
      p.sessions.set(k, sessions);
      p.latencies.set(k, []);
      p.busyMs.set(k, 0);
    }
  }
  const startupS = (performance.now() - started) / 1000;

  for (let round = -1; round < ROUNDS; round++) {
    for (const k of CONCURRENCY) {
      for (let j = 0; j < paths.length; j++) {
        const p = paths[(j + Math.max(0, round)) % paths.length]!;
        const r = await segment(p, k);
        if (round < 0) continue; // warm-up
        p.latencies.get(k)!.push(...r.latencies);
        p.busyMs.set(k, p.busyMs.get(k)! + r.elapsedMs);
      }
    }
  }

  const stats = new Map<string, { p50: number; p99: number; rps: number; n: number }>();
  for (const p of paths) {
    for (const k of CONCURRENCY) {
      const l = p.latencies.get(k)!.sort((a, b) => a - b);
      stats.set(`${p.name}/${k}`, { p50: quantile(l, 0.5), p99: quantile(l, 0.99), rps: l.length / (p.busyMs.get(k)! / 1000), n: l.length });
    }
  }
  const f = (x: number, w = 8, d = 2) => x.toFixed(d).padStart(w);
  console.log(`tools/call echo on open sessions, in budget; ${ROUNDS} rounds × ${SEGMENT_MS} ms per path and concurrency, alternating (start-up ${startupS.toFixed(1)} s)\n`);
  for (const k of CONCURRENCY) {
    console.log(`${k} client${k > 1 ? "s" : ""}                 p50 ms    p99 ms     req/s   requests`);
    for (const p of paths) {
      const s = stats.get(`${p.name}/${k}`)!;
      console.log(`${p.name.padEnd(20)}${f(s.p50, 10)}${f(s.p99, 10)}${f(s.rps, 10, 0)}${String(s.n).padStart(11)}`);
    }
    const t = stats.get(`tollbooth/${k}`)!;
    const d = stats.get(`DO rate limiter/${k}`)!;
    const a = stats.get(`direct to origin/${k}`)!;
    console.log(`tollbooth / DO limiter  p50 ${f(t.p50 / d.p50, 5)}×  p99 ${f(t.p99 / d.p99, 5)}×  throughput ${f(t.rps / d.rps, 5)}×`);
    console.log(`tollbooth / direct      p50 ${f(t.p50 / a.p50, 5)}×  p99 ${f(t.p99 / a.p99, 5)}×  throughput ${f(t.rps / a.rps, 5)}×`);
    const o = stats.get(`+ origin ceiling/${k}`)!;
    console.log(`origin ceiling layer    p50 +${f(o.p50 - t.p50, 5)} ms  (${f(o.p50 / t.p50, 5)}× tollbooth)`);
    const n = stats.get(`− network ceiling/${k}`)!;
    console.log(`network ceiling layer   p50 +${f(t.p50 - n.p50, 5)} ms  (${f(t.p50 / n.p50, 5)}× tollbooth without it)\n`);
  }

  const hot = await measureHotPath();
  console.log(`hot path, in-process (Node ${process.version}), ${hot.iterations} iterations per stage, µs per request`);
  for (const s of [...hot.stages, hot.middleware]) console.log(`  ${s.name.padEnd(38)} mean ${f(s.meanUs, 7, 1)}  p99 ${f(s.p99Us, 7, 1)}`);
  console.log(`  hot path: sum of the non-reference stages ${hot.hotPathUs.toFixed(1)} µs`);

  const bundle = await measureBundle();
  console.log(`\nbundle (wrangler deploy --dry-run, minified index.js): ${(bundle.minified.bytes / 1024).toFixed(1)} KiB, gzip -9 ${(bundle.minified.gzipBytes / 1024).toFixed(1)} KiB\n`);

  const targets: Array<[string, boolean]> = [];
  for (const k of CONCURRENCY) {
    const t = stats.get(`tollbooth/${k}`)!.p50;
    const d = stats.get(`DO rate limiter/${k}`)!.p50;
    targets.push([`tollbooth p50 ≤ ${MAX_RATIO_TO_DO_LIMITER} × DO-limiter p50, ${k} client${k > 1 ? "s" : ""}: ${t.toFixed(2)} ms vs ${(MAX_RATIO_TO_DO_LIMITER * d).toFixed(2)} ms (${(t / d).toFixed(2)}×)`, t <= MAX_RATIO_TO_DO_LIMITER * d]);
  }
  targets.push([`hot path < ${MAX_HOT_PATH_US / 1000} ms per request: ${(hot.hotPathUs / 1000).toFixed(3)} ms (core stages; whole middleware in Node ${(hot.middleware.meanUs / 1000).toFixed(3)} ms)`, hot.hotPathUs < MAX_HOT_PATH_US]);
  targets.push([`bundle < ${GZIP_BUDGET_BYTES / 1024} KiB gzipped: ${(bundle.minified.gzipBytes / 1024).toFixed(1)} KiB`, bundle.minified.gzipBytes < GZIP_BUDGET_BYTES]);
  for (const [line, ok] of targets) console.log(`${ok ? "PASS" : "FAIL"}  ${line}`);
  failed = targets.some(([, ok]) => !ok);
  console.log(`\n(total ${((performance.now() - started) / 1000).toFixed(0)} s)`);
} finally {
  await Promise.all(workers.map((w) => w.close()));
  await origin.close();
}
if (failed) process.exitCode = 1;
