/**
 * Load driver, run as its own process by test/load/load.test.ts (so the load comes from a
 * second process on loopback, not from the process that measures the gateway):
 *
 *   node test/load/driver.ts '<DriverConfig as JSON>'
 *
 * 1. Handshake: every caller (its own `x-api-key`) opens a real MCP session through the
 *    gateway (`initialize` + `notifications/initialized`, cost 0), 8 at a time.
 * 2. Scheduled run: prints START_LINE, then each caller sends the request mix of
 *    test/load/workload.ts open loop: request i at its start + i / `ratePerSecond`, for
 *    `durationMs`, without waiting for earlier answers (several may be in flight), so the
 *    offered load is the schedule's whatever the machine's speed; the callers' starts are
 *    spread over `staggerMs`.
 * 3. Drain (`drain`): once all its scheduled requests are answered, each caller sends the
 *    cost-1 call back to back until one is not admitted, so its bucket ends holding less
 *    than one unit: what it was admitted is then its allowance to within one unit, and the
 *    refused one is the last priced request the gateway decided for it. At most 32 callers
 *    drain at a time (the staggered ends keep that well below).
 * Each sample records the JSON-RPC id and, for a 402, the gateway's stamp (the second its
 * challenge was issued in).
 * Prints a {@link DriverReport} as one line of JSON on stdout.
 */
import { type McpSession, openSession } from "../../bench/mcp-http.ts";
import { type CallerReport, DRAIN, type DriverConfig, type DriverReport, MIX, type Sample, START_LINE } from "./workload.ts";

/** Most requests of one caller in flight at a time (its schedule's are 3.3 s apart). */
const MAX_IN_FLIGHT = 2;

/** Most drain requests per caller (a full bucket of 10 units plus refill needs about 11). */
const MAX_DRAIN = 50;

function sleepUntil(atMs: number): Promise<void> {
  const wait = atMs - performance.now();
  return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : Promise.resolve();
}

function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return `${e.name}: ${e.message}${e.cause ? ` (${e.cause.code ?? e.cause.message})` : ""}`;
}

/** Sends `MIX[mix]` on `session`, recording a sample (status 0 and an error on failure). */
async function send(cfg: DriverConfig, session: McpSession, mix: number, report: CallerReport, drain = false): Promise<Sample> {
  const entry = MIX[mix]!;
  const sample: Sample = { mix, sentMs: performance.now(), doneMs: NaN, status: 0, ...(drain ? { drain } : {}) };
  report.samples.push(sample); // in send order
  try {
    const reply = await session.request(entry.method, entry.params, cfg.timeoutMs);
    sample.doneMs = performance.now();
    sample.status = reply.status;
    sample.id = reply.id;
    const expires = /[ ,]expires=(\d+)/.exec(reply.headers.get("www-authenticate") ?? "")?.[1];
    if (reply.status === 402 && expires !== undefined) sample.stampS = Number(expires) - cfg.challengeTtlSeconds;
  } catch (err) {
    sample.doneMs = performance.now();
    report.errors.push(describe(err));
  }
  return sample;
}

/** The scheduled run and the drain of one caller. */
async function runCaller(cfg: DriverConfig, session: McpSession, index: number, report: CallerReport, startMs: number): Promise<void> {
  const interval = 1000 / cfg.ratePerSecond;
  // Callers start (and so end and drain) spread over `staggerMs`, each runs `durationMs`.
  const begin = startMs + (index * cfg.staggerMs) / cfg.keys.length;
  const deadline = begin + cfg.durationMs;
  const inFlight = new Set<Promise<Sample>>();
  const sent: Array<Promise<Sample>> = [];
  // durationMs × ratePerSecond requests, request i at begin + i × interval.
  const count = Math.round((cfg.durationMs * cfg.ratePerSecond) / 1000);
  for (let i = 0; i < count; i++) {
    await sleepUntil(begin + i * interval);
    // A machine that cannot keep up with the schedule: at most MAX_IN_FLIGHT wait per caller,
    // the next request goes out as soon as one is answered (the run then runs late, and the
    // test's check of the overload, timed by the gateway, says so).
    while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
    const mix = (index + i) % MIX.length;
    report.scheduledCost += MIX[mix]!.cost;
    const p = send(cfg, session, mix, report);
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
    sent.push(p);
  }
  await Promise.all(sent);
  await sleepUntil(deadline);
  if (!cfg.drain) return;
  await drainSlot.acquire();
  try {
    for (let i = 0; i < MAX_DRAIN; i++) {
      if ((await send(cfg, session, DRAIN, report, true)).status !== 200) break;
    }
  } finally {
    drainSlot.release();
  }
}

/**
 * At most `n` holders at a time. The drains take turns so the gateway answers each
 * cost-1 call quickly: a drain ends only once its calls come back faster than the bucket
 * refills a unit.
 */
function semaphore(n: number): { acquire(): Promise<void>; release(): void } {
  let free = n;
  const waiting: Array<() => void> = [];
  return {
    acquire: () => (free > 0 ? (free--, Promise.resolve()) : new Promise<void>((r) => waiting.push(r))),
    release: () => {
      const next = waiting.shift();
      if (next) next();
      else free++;
    },
  };
}

/** Callers draining at the same time. */
const drainSlot = semaphore(32);

const cfg = JSON.parse(process.argv[2] ?? "") as DriverConfig;
const reports: CallerReport[] = cfg.keys.map((key) => ({ key, samples: [], scheduledCost: 0, errors: [] }));
const sessions: Array<McpSession | null> = [];

const handshakeStart = performance.now();
for (let i = 0; i < cfg.keys.length; i += 8) {
  const batch = cfg.keys.slice(i, i + 8).map(async (key, j) => {
    try {
      return await openSession(cfg.url, { "x-api-key": key });
    } catch (err) {
      reports[i + j]!.errors.push(`handshake: ${describe(err)}`);
      return null;
    }
  });
  sessions.push(...(await Promise.all(batch)));
}
const handshakeMs = performance.now() - handshakeStart;

process.stdout.write(`${START_LINE}\n`);
const startMs = performance.now();
await Promise.all(sessions.map((s, i) => (s ? runCaller(cfg, s, i, reports[i]!, startMs) : Promise.resolve())));
const report: DriverReport = {
  callers: reports,
  handshakeMs,
  startMs,
  wallMs: performance.now() - startMs,
  timeOrigin: performance.timeOrigin,
};
process.stdout.write(`${JSON.stringify(report)}\n`);
