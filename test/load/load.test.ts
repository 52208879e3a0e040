/**
 * `npm run test:load`: a bounded load run against a real gateway (`wrangler dev`) in front
 * of a real origin (server-everything behind test/helpers/origin.ts's counting proxy).
 *
 * A second process (test/load/driver.ts) runs CALLERS callers, each with its own
 * `x-api-key` and its own MCP session, offering the mix of test/load/workload.ts
 * (get-sum 10, echo 1, ping 0, tools/list 0; 5.25 units a request) at RATE requests/s
 * each — 1.8 units/s, 3.7 × what the policy refills, about 1.8 × its allowance over its run —
 * for SECONDS seconds (the callers' starts spread over 10 s), then draining its bucket with
 * cost-1 calls. Asserted:
 * - every request is answered 200, 402 or 429: no 5xx, no connection error, no timeout;
 * - each caller's admitted cost is within ±5 % of what the policy allows it over its own
 *   run: capacity + refill × (last − first priced request's send time); the admitted cost
 *   is counted from the gateway's answers and must equal what the origin received;
 * - the gateway's memory (RSS of its workerd processes, sampled every second) is flat:
 *   the last third's mean ≤ the first third's × 1.10 + 16 MiB, beyond what the local
 *   runtime itself grows. `wrangler dev`'s workerd keeps tens of KiB per request it
 *   serves, whatever the Worker (a bare Worker answering locally grows as well), so before
 *   the run the test measures that growth per request on a Worker with Cloudflare's
 *   Durable Object rate limiter (bench/do-limiter-worker: an incoming fetch, one DO call
 *   and one origin fetch per request, like tollbooth's) and allows it for the requests
 *   between the two thirds.
 * Prints a summary table. Run: `npm run test:load` (LOAD_CALLERS, LOAD_SECONDS, LOAD_RATE
 * override the defaults 200, 30, 0.35).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { openSession } from "../../bench/mcp-http.ts";
import { startGateway, type Gateway } from "../../scripts/stack/gateway.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { rssKiB, workerdPids } from "./rss.ts";
import { LOAD_POLICY, MIX, START_LINE, type DriverConfig, type DriverReport } from "./workload.ts";

const CALLERS = Number(process.env.LOAD_CALLERS ?? 200);
const SECONDS = Number(process.env.LOAD_SECONDS ?? 30);
const RATE = Number(process.env.LOAD_RATE ?? 0.35);
/** The callers' 30 s runs start spread over this many seconds. */
const STAGGER_SECONDS = 10;
/** Allowed relative deviation of a caller's admitted cost from its allowance. */
const TOLERANCE = 0.05;
/** Memory: last-third mean ≤ first-third mean × RSS_FACTOR + RSS_SLACK_KIB (+ the runtime's own growth). */
const RSS_FACTOR = 1.1;
const RSS_SLACK_KIB = 16 * 1024;
/** Length of the runtime's calibration burst, ms, after a warm-up burst. */
const CALIBRATION_MS = 8_000;
const CALIBRATION_WARMUP_MS = 2_000;

const DRIVER = fileURLToPath(new URL("./driver.ts", import.meta.url));
const ANSWERS = new Set([200, 402, 429]);

let origin: Origin;
let gateway: Gateway;
let reference: Gateway | undefined;

beforeAll(async () => {
  origin = await startOrigin();
  [gateway, reference] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: LOAD_POLICY }),
    startGateway({ originUrl: origin.url, config: fileURLToPath(new URL("../../bench/do-limiter-worker/wrangler.toml", import.meta.url)) }),
  ]);
});

afterAll(async () => {
  await gateway?.close();
  await reference?.close();
  await origin?.close();
});

/**
 * The local runtime's own memory growth: RSS of the reference Worker's workerd processes
 * before and after CALIBRATION_MS of 16 closed-loop clients calling `tools/call` echo.
 * @returns KiB per request, and the figures it came from
 */
async function runtimeGrowth(ref: Gateway): Promise<{ perRequestKiB: number; requests: number; beforeKiB: number; afterKiB: number }> {
  const pids = workerdPids(process.pid, ref.url);
  const sessions = await Promise.all(Array.from({ length: 16 }, (_, i) => openSession(`${ref.url}/mcp`, { "x-api-key": `calibration-${i}` })));
  const burst = async (ms: number): Promise<number> => {
    const end = performance.now() + ms;
    let requests = 0;
    await Promise.all(
      sessions.map(async (s) => {
        while (performance.now() < end) {
          const reply = await s.request("tools/call", { name: "echo", arguments: { message: "calibration" } });
          if (reply.status !== 200) throw new Error(`calibration: HTTP ${reply.status}: ${reply.text.slice(0, 300)}`);
          requests++;
        }
      }),
    );
    return requests;
  };
  await burst(CALIBRATION_WARMUP_MS); // JIT, first allocations, the callers' objects
  const beforeKiB = rssKiB(pids);
  const requests = await burst(CALIBRATION_MS);
  const afterKiB = rssKiB(pids);
  return { perRequestKiB: Math.max(0, afterKiB - beforeKiB) / requests, requests, beforeKiB, afterKiB };
}

/**
 * Runs the driver process; calls `onStart` when its paced run starts and resolves with
 * its report.
 */
function runDriver(cfg: DriverConfig, onStart: () => void): Promise<DriverReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DRIVER, JSON.stringify(cfg)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let started = false;
    child.stdout.on("data", (c) => {
      out += c;
      if (!started && out.startsWith(START_LINE + "\n")) {
        started = true;
        onStart();
      }
    });
    child.stderr.on("data", (c) => (err += c));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`driver exited with ${code}:\n${err.slice(-4000)}`));
      try {
        resolve(JSON.parse(out.slice(START_LINE.length + 1)) as DriverReport);
      } catch (e) {
        reject(new Error(`driver output is not a report (${(e as Error).message}): ${out.slice(0, 500)}\n${err.slice(-2000)}`));
      }
    });
  });
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

test(`${CALLERS} callers, mixed costs, ${SECONDS} s: every answer 200/402/429, admitted cost within ±5 % of the policy, flat memory`, async () => {
  const runId = Math.random().toString(36).slice(2, 8);
  const keys = Array.from({ length: CALLERS }, (_, i) => `load-${runId}-${i}`);
  const runtime = await runtimeGrowth(reference!);
  await reference!.close(); // its CPU is the gateway's now
  reference = undefined;
  const pids = workerdPids(process.pid, gateway.url);

  // Sample the gateway's memory every second during the paced run.
  const rss: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  const sample = () => {
    if (rss.length <= SECONDS + STAGGER_SECONDS) rss.push(rssKiB(pids));
  };
  let report: DriverReport;
  try {
    report = await runDriver({ url: `${gateway.url}/mcp`, keys, durationMs: SECONDS * 1000, staggerMs: STAGGER_SECONDS * 1000, ratePerSecond: RATE, timeoutMs: 10_000 }, () => {
      sample();
      sampler = setInterval(sample, 1000);
    });
  } finally {
    clearInterval(sampler);
  }

  // What the origin received, per caller: the cost of the tools/call messages it saw.
  const originCost = new Map<string, number>();
  for (const r of origin.requests()) {
    const key = r.headers["x-api-key"];
    if (typeof key !== "string") continue;
    for (const msg of r.messages as Array<{ method?: string; params?: { name?: string } }>) {
      if (msg.method !== "tools/call") continue;
      const cost = MIX.find((m) => m.method === "tools/call" && m.params?.name === msg.params?.name)?.cost ?? NaN;
      originCost.set(key, (originCost.get(key) ?? 0) + cost);
    }
  }

  const statuses = new Map<number, number>();
  const errors: string[] = [];
  const rows: Array<{ key: string; admitted: number; allowed: number; offered: number; deviation: number; origin: number }> = [];
  for (const c of report.callers) {
    errors.push(...c.errors.map((e) => `${c.key}: ${e}`));
    let admitted = 0;
    let offered = 0;
    for (const s of c.samples) {
      statuses.set(s.status, (statuses.get(s.status) ?? 0) + 1);
      const cost = MIX[s.mix]!.cost;
      offered += cost;
      if (s.status === 200) admitted += cost;
    }
    const priced = c.samples.filter((s) => MIX[s.mix]!.cost > 0);
    const first = priced[0]?.sentMs ?? 0;
    const last = priced.at(-1)?.sentMs ?? 0;
    const allowed = LOAD_POLICY.bucket.capacity + (LOAD_POLICY.bucket.refillPerSecond * (last - first)) / 1000;
    rows.push({ key: c.key, admitted, allowed, offered, deviation: (admitted - allowed) / allowed, origin: originCost.get(c.key) ?? 0 });
  }

  const total = [...statuses.values()].reduce((a, b) => a + b, 0);
  const latencies = report.callers.flatMap((c) => c.samples.map((s) => s.doneMs - s.sentMs)).sort((a, b) => a - b);
  const q = (p: number) => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN).toFixed(0);
  const third = Math.max(1, Math.floor(rss.length / 3));
  const firstThird = mean(rss.slice(0, third));
  const lastThird = mean(rss.slice(-third));
  // Requests sent between the middles of the first and the last third of the sampled run.
  const between = report.callers.flatMap((c) => c.samples).filter((s) => {
    const at = (s.sentMs - report.startMs) / 1000;
    return at >= third / 2 && at <= rss.length - third / 2;
  }).length;
  const runtimeAllowance = runtime.perRequestKiB * between;
  const rssLimit = firstThird * RSS_FACTOR + RSS_SLACK_KIB + runtimeAllowance;
  const devs = rows.map((r) => r.deviation);
  const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)} %`;
  console.log(
    [
      `load: ${CALLERS} callers × ${RATE} req/s for ${SECONDS} s each (starts spread over ${STAGGER_SECONDS} s), then a drain (handshakes ${(report.handshakeMs / 1000).toFixed(1)} s, run ${(report.wallMs / 1000).toFixed(1)} s), policy ${LOAD_POLICY.bucket.capacity} + ${LOAD_POLICY.bucket.refillPerSecond}/s`,
      `requests            ${total} (${(total / (report.wallMs / 1000)).toFixed(0)} req/s; latency p50 ${q(0.5)} ms, p99 ${q(0.99)} ms)`,
      ...[...statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `  status ${String(s === 0 ? "error" : s).padEnd(12)}${n}`),
      `connection errors   ${errors.length}`,
      `offered / allowed   ${(mean(rows.map((r) => r.offered / r.allowed))).toFixed(2)} × (mean over callers)`,
      `admitted vs allowed min ${pct(Math.min(...devs))}, mean ${pct(mean(devs))}, max ${pct(Math.max(...devs))} (tolerance ±${TOLERANCE * 100} %)`,
      `admitted units      gateway ${rows.reduce((a, r) => a + r.admitted, 0)}, origin ${rows.reduce((a, r) => a + r.origin, 0)}`,
      `gateway RSS         first third ${mib(firstThird)}, last third ${mib(lastThird)} (${rss.length} samples, min ${mib(Math.min(...rss))}, max ${mib(Math.max(...rss))}; workerd pids ${pids.join(",")})`,
      `runtime's own growth ${runtime.perRequestKiB.toFixed(1)} KiB/request (DO-limiter Worker, ${runtime.requests} requests: ${mib(runtime.beforeKiB)} → ${mib(runtime.afterKiB)}), ${mib(runtimeAllowance)} for the ${between} requests between the thirds`,
      `RSS limit           first third × ${RSS_FACTOR} + ${mib(RSS_SLACK_KIB)} + runtime growth = ${mib(rssLimit)}; gateway's growth beyond the runtime's ${((lastThird - firstThird - runtimeAllowance) / 1024).toFixed(1)} MiB`,
    ].join("\n"),
  );

  expect(errors.slice(0, 10)).toEqual([]);
  expect(report.callers.every((c) => c.samples.length > 0)).toBe(true);
  expect([...statuses.keys()].filter((s) => !ANSWERS.has(s))).toEqual([]);
  // The load must exceed the allowance for the comparison to mean anything.
  expect(rows.filter((r) => r.offered < 1.5 * r.allowed).map((r) => r.key)).toEqual([]);
  expect(rows.filter((r) => Math.abs(r.deviation) > TOLERANCE).map((r) => `${r.key}: ${r.admitted} admitted, ${r.allowed.toFixed(1)} allowed`)).toEqual([]);
  expect(rows.filter((r) => r.origin !== r.admitted).map((r) => `${r.key}: gateway ${r.admitted}, origin ${r.origin}`)).toEqual([]);
  expect(lastThird).toBeLessThanOrEqual(rssLimit);
});
