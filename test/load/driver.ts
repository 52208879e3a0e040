/**
 * Load driver, run as its own process by test/load/load.test.ts (so the load comes from a
 * second process on loopback, not from the process that measures the gateway):
 *
 *   node test/load/driver.ts '<DriverConfig as JSON>'
 *
 * 1. Handshake: every caller (its own `x-api-key`) opens a real MCP session through the
 *    gateway (`initialize` + `notifications/initialized`, cost 0), 8 at a time.
 * 2. Paced run: prints START_LINE, then each caller sends the request mix of
 *    test/load/workload.ts, one request in flight at a time, paced at `ratePerSecond`,
 *    for `durationMs`; the callers' starts are spread over `staggerMs`.
 * 3. Drain: each caller then sends the cost-1 call back to back until one is not
 *    admitted, so its bucket ends holding less than one unit: what it was admitted is then
 *    its allowance to within one unit. At most 32 callers drain at a time (the staggered
 *    ends keep that well below).
 * Prints a {@link DriverReport} as one line of JSON on stdout.
 */
import { openSession, type McpSession } from "../../bench/mcp-http.ts";
import { DRAIN, MIX, START_LINE, type CallerReport, type DriverConfig, type DriverReport, type Sample } from "./workload.ts";

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
async function send(cfg: DriverConfig, session: McpSession, mix: number, report: CallerReport): Promise<Sample> {
  const entry = MIX[mix]!;
  const sentMs = performance.now();
  let sample: Sample;
  try {
    const reply = await session.request(entry.method, entry.params, cfg.timeoutMs);
    sample = { mix, sentMs, doneMs: performance.now(), status: reply.status };
  } catch (err) {
    sample = { mix, sentMs, doneMs: performance.now(), status: 0 };
    report.errors.push(describe(err));
  }
  report.samples.push(sample);
  return sample;
}

/** The paced run and the drain of one caller. */
async function runCaller(cfg: DriverConfig, session: McpSession, index: number, report: CallerReport, startMs: number): Promise<void> {
  const interval = 1000 / cfg.ratePerSecond;
  // Callers start (and so end and drain) spread over `staggerMs`, each runs `durationMs`.
  const begin = startMs + (index * cfg.staggerMs) / cfg.keys.length;
  const deadline = begin + cfg.durationMs;
  for (let i = 0, at = begin; at < deadline; i++, at += interval) {
    await sleepUntil(at);
    if (performance.now() >= deadline) break; // a caller slowed down by the answers does not run over
    await send(cfg, session, (index + i) % MIX.length, report);
  }
  await sleepUntil(deadline);
  await drainSlot.acquire();
  try {
    for (let i = 0; i < MAX_DRAIN; i++) {
      if ((await send(cfg, session, DRAIN, report)).status !== 200) break;
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
const reports: CallerReport[] = cfg.keys.map((key) => ({ key, samples: [], errors: [] }));
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

process.stdout.write(START_LINE + "\n");
const startMs = performance.now();
await Promise.all(sessions.map((s, i) => (s ? runCaller(cfg, s, i, reports[i]!, startMs) : Promise.resolve())));
const report: DriverReport = { callers: reports, handshakeMs, startMs, wallMs: performance.now() - startMs };
process.stdout.write(JSON.stringify(report) + "\n");
