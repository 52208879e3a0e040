/**
 * `npm run test:load`: a bounded load run against a real gateway (`wrangler dev`) in front
 * of a real origin (server-everything behind test/helpers/origin.ts's counting proxy).
 *
 * A second process (test/load/driver.ts) runs CALLERS callers, each with its own
 * `x-api-key` and its own MCP session, offering the mix of test/load/workload.ts
 * (get-sum 10, echo 1, ping 0, tools/list 0; 61 units per 9 requests) on a fixed schedule,
 * open loop (RATE requests/s each, sent on time whether or not earlier ones were answered,
 * CALLERS × RATE requests/s in all), for SECONDS seconds (the callers' starts spread over
 * STAGGER_SECONDS), then draining its bucket with cost-1 calls. The same schedule, without
 * the drain, runs first against a reference Worker with Cloudflare's Durable Object rate
 * limiter (bench/do-limiter-worker: an incoming fetch, one DO call and one origin fetch per
 * request, like tollbooth's) in front of the same origin. Asserted:
 * - every request is answered 200, 402 or 429: no 5xx, no connection error, no timeout;
 * - the schedule offers each caller at least 1.5 × the policy's allowance over its run (a
 *   property of the schedule, not of the machine's speed, unless the machine is so slow
 *   that the run falls far behind it: at most 2 requests per caller wait at a time);
 * - each caller's admitted cost is within −5 % … 0 % of what the policy allows it over its own
 *   run, capacity + refill × (last − first priced request), timed by the gateway: the
 *   first priced request by the second stamped in the origin proof it forwarded
 *   (`Tollbooth-Signature: t=…`), the last (the drain's refused call) by the second its
 *   402's challenge was issued in (`expires` − the challenge lifetime); each narrowed to
 *   the request's send-to-answer interval, so queueing before the gateway moves neither;
 *   the admitted cost is counted from the gateway's answers and must equal what the origin
 *   received;
 * - memory: the gateway's growth per request (workerd RSS sampled every second, the last
 *   third's mean minus the first third's, over the requests sent between them) is at most
 *   MEM_FACTOR × the reference Worker's under the same schedule + MEM_SLACK_KIB. `wrangler
 *   dev`'s workerd itself keeps some memory per request it serves, whatever the Worker; the
 *   reference measures that on this machine in this run.
 * Prints a summary table. Run: `npm run test:load` (LOAD_CALLERS, LOAD_SECONDS, LOAD_RATE
 * override the defaults 200, 30, 0.3).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Origin, type SeenRequest, startOrigin } from "../helpers/origin.ts";
import { rssKiB, workerdPids } from "./rss.ts";
import { type DriverConfig, type DriverReport, LOAD_POLICY, MIX, type Sample, START_LINE } from "./workload.ts";

const CALLERS = Number(process.env.LOAD_CALLERS ?? 200);
const SECONDS = Number(process.env.LOAD_SECONDS ?? 30);
const RATE = Number(process.env.LOAD_RATE ?? 0.3);
/** The callers' runs start spread over this many seconds. */
const STAGGER_SECONDS = 10;
/** Allowed relative deviation of a caller's admitted cost from its allowance. */
const TOLERANCE = 0.05;
/** What a caller's drain can leave in its bucket: less than one unit (its cheapest call costs 1). */
const UNTAKEABLE_UNITS = 1;
/** Least offered / allowed per caller for the comparison to mean anything. */
const MIN_OVERLOAD = 1.5;
/** Memory: gateway KiB/request ≤ reference KiB/request × MEM_FACTOR + MEM_SLACK_KIB. */
const MEM_FACTOR = 1.5;
const MEM_SLACK_KIB = 2;

const DRIVER = fileURLToPath(new URL("./driver.ts", import.meta.url));
/** Below one unit (the smallest cost): an admitted cost above the allowance by this much or more is over-admission. */
const OVER_SLACK_UNITS = 0.5;
const ANSWERS = new Set([200, 402, 429]);

let origin: Origin;
let gateway: Gateway;
let reference: Gateway | undefined;

beforeAll(async () => {
  origin = await startOrigin();
  // One `wrangler dev` at a time, each within its own readiness timeout.
  gateway = await startGateway({ originUrl: origin.url, policy: LOAD_POLICY });
  reference = await startGateway({
    originUrl: origin.url,
    config: fileURLToPath(new URL("../../bench/do-limiter-worker/wrangler.toml", import.meta.url)),
  });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await reference?.close();
  await origin?.close();
});

/**
 * Runs the driver process; calls `onStart` when its scheduled run starts and resolves with
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
      if (!started && out.startsWith(`${START_LINE}\n`)) {
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

/** Memory growth of one Worker over one driver run. */
interface Growth {
  /** RSS samples, KiB, one a second from the start of the scheduled run. */
  rss: number[];
  firstThirdKiB: number;
  lastThirdKiB: number;
  /** Requests sent between the middles of the first and the last third. */
  between: number;
  /** (last third − first third) / between. */
  perRequestKiB: number;
}

/**
 * Runs the driver against `worker` while sampling its workerd RSS every second.
 * @returns the driver's report and the memory growth per request
 */
async function measuredRun(
  worker: Gateway,
  cfg: Omit<DriverConfig, "url">,
): Promise<{ report: DriverReport; growth: Growth; pids: number[] }> {
  let pids = workerdPids(process.pid, worker.url);
  const rss: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  const sample = () => {
    if (rss.length > SECONDS + STAGGER_SECONDS) return;
    try {
      rss.push(rssKiB(pids));
    } catch {
      pids = workerdPids(process.pid, worker.url); // wrangler dev replaced a workerd process
      rss.push(rssKiB(pids));
    }
  };
  let report: DriverReport;
  try {
    report = await runDriver({ ...cfg, url: `${worker.url}/mcp` }, () => {
      pids = workerdPids(process.pid, worker.url);
      sample();
      sampler = setInterval(sample, 1000);
    });
  } finally {
    clearInterval(sampler);
  }
  const third = Math.max(1, Math.floor(rss.length / 3));
  const firstThirdKiB = mean(rss.slice(0, third));
  const lastThirdKiB = mean(rss.slice(-third));
  const between = report.callers
    .flatMap((c) => c.samples)
    .filter((s) => {
      const at = (s.sentMs - report.startMs) / 1000;
      return at >= third / 2 && at <= rss.length - third / 2;
    }).length;
  return {
    report,
    pids,
    growth: { rss, firstThirdKiB, lastThirdKiB, between, perRequestKiB: (lastThirdKiB - firstThirdKiB) / Math.max(1, between) },
  };
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * When the gateway decided a request, unix ms: within the second it stamped (`stampS`) and
 * within the request's send-to-answer interval on the driver's clock (the same system
 * clock). @returns the middle of that and its half-width
 */
function decidedAt(stampS: number, s: Sample, timeOrigin: number): { ms: number; errMs: number } {
  let lo = Math.max(stampS * 1000, timeOrigin + s.sentMs);
  let hi = Math.min(stampS * 1000 + 1000, timeOrigin + s.doneMs);
  if (lo > hi) [lo, hi] = [stampS * 1000, stampS * 1000 + 1000]; // the stamp alone (a second boundary between decision and stamp)
  return { ms: (lo + hi) / 2, errMs: (hi - lo) / 2 };
}

test(`${CALLERS} callers, mixed costs, ${SECONDS} s open loop: every answer 200/402/429, admitted cost within −5 % … 0 % of the policy by the gateway's clock, memory per request as the reference Worker's`, async () => {
  const runId = Math.random().toString(36).slice(2, 8);
  const schedule = {
    durationMs: SECONDS * 1000,
    staggerMs: STAGGER_SECONDS * 1000,
    ratePerSecond: RATE,
    timeoutMs: 30_000,
    challengeTtlSeconds: LOAD_POLICY.challenge.ttlSeconds,
  };

  // The reference Worker first, the same schedule (no drain), then it stops: its CPU is the gateway's.
  const ref = await measuredRun(reference!, {
    ...schedule,
    keys: Array.from({ length: CALLERS }, (_, i) => `ref-${runId}-${i}`),
    drain: false,
  });
  await reference!.close();
  reference = undefined;
  const refStatuses = ref.report.callers.flatMap((c) => c.samples.map((s) => s.status));
  const refErrors = ref.report.callers.flatMap((c) => c.errors);
  origin.reset();

  const keys = Array.from({ length: CALLERS }, (_, i) => `load-${runId}-${i}`);
  const gw = await measuredRun(gateway, { ...schedule, keys, drain: true });
  const report = gw.report;

  // What the origin received, per caller: the cost of its tools/call messages, and the
  // origin proof's second (`Tollbooth-Signature: t=`) of each forwarded request by JSON-RPC id.
  const originCost = new Map<string, number>();
  const forwardedAt = new Map<string, number>();
  for (const r of origin.requests() as SeenRequest[]) {
    const key = r.headers["x-api-key"];
    if (typeof key !== "string") continue;
    const t = /^t=(\d+),/.exec(String(r.headers["tollbooth-signature"] ?? ""))?.[1];
    for (const msg of r.messages as Array<{ id?: number; method?: string; params?: { name?: string } }>) {
      if (t !== undefined && msg.id !== undefined) forwardedAt.set(`${key}#${msg.id}`, Number(t));
      if (msg.method !== "tools/call") continue;
      const cost = MIX.find((m) => m.method === "tools/call" && m.params?.name === msg.params?.name)?.cost ?? NaN;
      originCost.set(key, (originCost.get(key) ?? 0) + cost);
    }
  }

  const { capacity, refillPerSecond } = LOAD_POLICY.bucket;
  const statuses = new Map<number, number>();
  const errors: string[] = [];
  const unstamped: string[] = [];
  const rows: Array<{
    key: string;
    admitted: number;
    allowed: number;
    offered: number;
    deviation: number;
    origin: number;
    timingErrUnits: number;
  }> = [];
  for (const c of report.callers) {
    errors.push(...c.errors.map((e) => `${c.key}: ${e}`));
    let admitted = 0;
    for (const s of c.samples) {
      statuses.set(s.status, (statuses.get(s.status) ?? 0) + 1);
      if (s.status === 200) admitted += MIX[s.mix]!.cost;
    }
    // The first priced request (sent first; the bucket was full) and the last (the drain's refused call).
    const priced = c.samples.filter((s) => MIX[s.mix]!.cost > 0);
    const first = priced[0];
    const last = c.samples.at(-1);
    const firstStamp = first?.id !== undefined ? forwardedAt.get(`${c.key}#${first.id}`) : undefined;
    if (
      !first ||
      !last ||
      first.status !== 200 ||
      firstStamp === undefined ||
      !last.drain ||
      last.status !== 402 ||
      last.stampS === undefined
    ) {
      unstamped.push(`${c.key}: first ${first?.status}/${firstStamp}, last ${last?.status}/${last?.drain}/${last?.stampS}`);
      continue;
    }
    const from = decidedAt(firstStamp, first, report.timeOrigin);
    const to = decidedAt(last.stampS, last, report.timeOrigin);
    const allowed = capacity + (refillPerSecond * (to.ms - from.ms)) / 1000;
    rows.push({
      key: c.key,
      admitted,
      allowed,
      offered: c.scheduledCost,
      deviation: (admitted - allowed) / allowed,
      origin: originCost.get(c.key) ?? 0,
      timingErrUnits: (refillPerSecond * (from.errMs + to.errMs)) / 1000,
    });
  }

  const total = [...statuses.values()].reduce((a, b) => a + b, 0);
  const latencies = report.callers.flatMap((c) => c.samples.map((s) => s.doneMs - s.sentMs)).sort((a, b) => a - b);
  const q = (p: number) => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN).toFixed(0);
  const devs = rows.map((r) => r.deviation);
  const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)} %`;
  const growthLine = (name: string, g: Growth) =>
    `${name.padEnd(20)}${g.perRequestKiB.toFixed(2)} KiB/request (${mib(g.firstThirdKiB)} → ${mib(g.lastThirdKiB)} over ${g.between} requests; ${g.rss.length} samples, min ${mib(Math.min(...g.rss))}, max ${mib(Math.max(...g.rss))})`;
  const memLimit = ref.growth.perRequestKiB * MEM_FACTOR + MEM_SLACK_KIB;
  // Requests sent in each second of the run (what the gateway's network sees from 127.0.0.1).
  const perSecond = new Map<number, number>();
  for (const c of report.callers)
    for (const s of c.samples) perSecond.set(Math.floor(s.sentMs / 1000), (perSecond.get(Math.floor(s.sentMs / 1000)) ?? 0) + 1);
  const scheduledPerSecond = new Map<number, number>();
  for (const c of report.callers)
    for (const s of c.samples)
      if (!s.drain) scheduledPerSecond.set(Math.floor(s.sentMs / 1000), (scheduledPerSecond.get(Math.floor(s.sentMs / 1000)) ?? 0) + 1);
  console.log(
    [
      `load: ${CALLERS} callers × ${RATE} req/s open loop (${(CALLERS * RATE).toFixed(0)} req/s offered) for ${SECONDS} s each (starts spread over ${STAGGER_SECONDS} s), then a drain (handshakes ${(report.handshakeMs / 1000).toFixed(1)} s, run ${(report.wallMs / 1000).toFixed(1)} s), policy ${capacity} + ${refillPerSecond}/s`,
      `requests            ${total} (${(total / (report.wallMs / 1000)).toFixed(0)} req/s; busiest second ${Math.max(...perSecond.values())} requests, ${Math.max(...scheduledPerSecond.values())} of them scheduled; latency p50 ${q(0.5)} ms, p99 ${q(0.99)} ms)`,
      `reference run       ${refStatuses.length} requests in ${(ref.report.wallMs / 1000).toFixed(1)} s, ${refStatuses.filter((x) => x !== 200).length} not 200, ${refErrors.length} errors`,
      ...[...statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `  status ${String(s === 0 ? "error" : s).padEnd(12)}${n}`),
      `connection errors   ${errors.length}`,
      `offered / allowed   min ${Math.min(...rows.map((r) => r.offered / r.allowed)).toFixed(2)} ×, mean ${mean(rows.map((r) => r.offered / r.allowed)).toFixed(2)} × (the schedule's cost over the caller's allowance)`,
      `admitted vs allowed min ${pct(Math.min(...devs))}, mean ${pct(mean(devs))}, max ${pct(Math.max(...devs))} (tolerance ±${TOLERANCE * 100} %; gateway-clock uncertainty ≤ ${Math.max(...rows.map((r) => r.timingErrUnits)).toFixed(2)} units, mean ${mean(rows.map((r) => r.timingErrUnits)).toFixed(3)})`,
      `admitted units      gateway ${rows.reduce((a, r) => a + r.admitted, 0)}, origin ${rows.reduce((a, r) => a + r.origin, 0)}`,
      `memory per request  (workerd RSS, last third − first third)`,
      `  ${growthLine("reference Worker", ref.growth)}`,
      `  ${growthLine("gateway", gw.growth)}`,
      `  limit ${memLimit.toFixed(2)} KiB/request (reference × ${MEM_FACTOR} + ${MEM_SLACK_KIB} KiB); gateway workerd pids ${gw.pids.join(",")}`,
    ].join("\n"),
  );

  expect(refErrors.slice(0, 10), "the reference run").toEqual([]);
  expect(refStatuses.filter((x) => x !== 200).length, "the reference Worker answers everything 200").toBe(0);
  expect(errors.slice(0, 10)).toEqual([]);
  expect(report.callers.every((c) => c.samples.length > 0)).toBe(true);
  expect([...statuses.keys()].filter((s) => !ANSWERS.has(s))).toEqual([]);
  expect(unstamped.slice(0, 10)).toEqual([]);
  // The schedule must offer more than the allowance for the comparison to mean anything.
  expect(
    rows.filter((r) => r.offered < MIN_OVERLOAD * r.allowed).map((r) => `${r.key}: offered ${r.offered}, allowed ${r.allowed.toFixed(1)}`),
  ).toEqual([]);
  // Below: the drain ends at its first refused cost-1 call, when the bucket holds less than
  // one unit, so up to one unit of the allowance can never be admitted: it is allowed for.
  expect(
    rows
      // Never above the allowance (leases included): not by a unit, whatever the gateway-clock
      // uncertainty and the sub-unit rounding of the allowance.
      .filter(
        (r) => r.admitted > r.allowed + r.timingErrUnits + OVER_SLACK_UNITS || r.admitted < r.allowed * (1 - TOLERANCE) - UNTAKEABLE_UNITS,
      )
      .map((r) => `${r.key}: ${r.admitted} admitted, ${r.allowed.toFixed(1)} allowed`),
  ).toEqual([]);
  expect(rows.filter((r) => r.origin !== r.admitted).map((r) => `${r.key}: gateway ${r.admitted}, origin ${r.origin}`)).toEqual([]);
  expect(gw.growth.perRequestKiB).toBeLessThanOrEqual(memLimit);
}, 300_000);
