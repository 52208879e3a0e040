/**
 * The measuring parts of `npm run bench:gateway`: the cost model (bench/cost.ts) against
 * sums worked by hand from the list prices, the price table's provenance (bench/prices.ts),
 * the wrappers' counters (bench/far-tollbooth/far.ts) against stand-in bindings, and the CPU
 * reader (bench/proc-cpu.ts) against a real child process that burns a known amount of its
 * own CPU.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { costPerMillion, monthlyCost, type Ops } from "../../../bench/cost.ts";
import {
  type BenchCounts,
  benchEndpoint,
  countingKv,
  farNamespace,
  instrumentStorage,
  statsCalls,
} from "../../../bench/far-tollbooth/far.ts";
import { BASE_USD_PER_MONTH, PRICES } from "../../../bench/prices.ts";
import { cpuMs, wranglerProcesses } from "../../../bench/proc-cpu.ts";

const NONE: Ops = {
  workerRequests: 0,
  cpuMs: 0,
  doRequests: 0,
  doActiveSeconds: 0,
  doRowsWritten: 0,
  kvReads: 0,
  logEvents: 0,
  aePoints: 0,
  rateLimitCalls: 0,
};

describe("cost model", () => {
  it("prices a million requests at the marginal prices, item by item", () => {
    // 1 request, 2 CPU ms, 0.1 DO requests each active 1 s (at 128 MB), 0.5 rows, 2 log events.
    const ops: Ops = { ...NONE, workerRequests: 1, cpuMs: 2, doRequests: 0.1, doActiveSeconds: 0.1, doRowsWritten: 0.5, logEvents: 2 };
    const cost = costPerMillion(ops);
    expect(cost.byItem.workerRequests).toBeCloseTo(0.3, 10);
    expect(cost.byItem.workerCpuMs).toBeCloseTo(0.04, 10);
    expect(cost.byItem.doRequests).toBeCloseTo(0.015, 10);
    // 0.1 s × 0.128 GB × 1e6 requests = 12,800 GB-s at $12.50 per million.
    expect(cost.byItem.doDuration).toBeCloseTo(0.16, 10);
    expect(cost.byItem.doRowsWritten).toBeCloseTo(0.5, 10);
    expect(cost.byItem.logEvents).toBeCloseTo(1.2, 10);
    expect(cost.byItem.kvReads).toBe(0);
    expect(cost.usd).toBeCloseTo(0.3 + 0.04 + 0.015 + 0.16 + 0.5 + 1.2, 10);
  });

  it("subtracts each included amount from a month and adds the base price", () => {
    const ops: Ops = { ...NONE, workerRequests: 1, cpuMs: 2, logEvents: 1 };
    // 10 M requests: 10 M requests, 20 M CPU ms, 10 M log events are all within the plan.
    expect(monthlyCost(ops, 10e6).usd).toBeCloseTo(BASE_USD_PER_MONTH, 10);
    // 100 M: (100 − 10) M requests × $0.30 + (200 − 30) M CPU ms × $0.02 + (100 − 20) M events × $0.60.
    const month = monthlyCost(ops, 100e6);
    expect(month.byItem.workerRequests).toBeCloseTo(27, 10);
    expect(month.byItem.workerCpuMs).toBeCloseTo(3.4, 10);
    expect(month.byItem.logEvents).toBeCloseTo(48, 10);
    expect(month.usd).toBeCloseTo(5 + 27 + 3.4 + 48, 10);
  });

  it("refuses counts that cannot be right", () => {
    expect(() => costPerMillion({ ...NONE, cpuMs: -1 })).toThrow(/ops\.cpuMs/);
    expect(() => costPerMillion({ ...NONE, doRequests: Number.NaN })).toThrow(/ops\.doRequests/);
    expect(() => monthlyCost(NONE, -5)).toThrow(/requests/);
  });
});

describe("price table", () => {
  it("gives every price its page, the date it was read and where", () => {
    for (const [key, p] of Object.entries(PRICES)) {
      expect(p.url, key).toMatch(/^https:\/\/developers\.cloudflare\.com\//);
      expect(p.read, key).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(["reference", "cloudflare page", "third-party page"], key).toContain(p.from);
      expect(p.usdPerMillion, key).toBeGreaterThanOrEqual(0);
      if (p.from !== "cloudflare page")
        expect(typeof (p as { via?: unknown }).via, `${key}: a figure not read on Cloudflare's page says where it was read`).toBe("string");
    }
  });
});

/** What the wrappers answer on `GET /__bench/do-calls` now. */
async function counts(): Promise<BenchCounts> {
  return (await benchEndpoint(new Request("http://bench/__bench/do-calls"))!.json()) as BenchCounts;
}

describe("operation counters", () => {
  it("counts Durable Object calls, Stats flushes apart, KV reads per key, rows written and alarms set", async () => {
    const stub = { admit: async (n: number) => n + 1, flush: async () => "ok", id: "object-id" };
    const namespace = { idFromName: (name: string) => name, get: (_id: string) => stub };
    const before = await counts();
    const callers = farNamespace(namespace, 0);
    const stats = farNamespace({ ...namespace }, 0, statsCalls);
    expect(await callers.get(callers.idFromName("a")).admit(1)).toBe(2);
    expect(await callers.get("b").admit(2)).toBe(3);
    expect(callers.get("c").id).toBe("object-id"); // reading the id is no call
    expect(await stats.get("s").flush()).toBe("ok");
    const kv = countingKv({ get: async (key: string | string[]) => (Array.isArray(key) ? new Map() : null) });
    await kv.get("k1");
    await kv.get(["k2", "k3", "k4"]);
    // A Durable Object's storage: each statement's rows written, one per setAlarm.
    const alarms: number[] = [];
    const storage = {
      sql: { exec: (query: string) => ({ rowsWritten: query.startsWith("INSERT") ? 3 : 0 }) },
      setAlarm: async (at: number) => void alarms.push(at),
    };
    instrumentStorage({ storage } as unknown as DurableObjectState);
    instrumentStorage({ storage } as unknown as DurableObjectState); // twice: still counted once per write
    storage.sql.exec("INSERT INTO t VALUES (1), (2), (3)");
    storage.sql.exec("SELECT * FROM t");
    await storage.setAlarm(42);
    const after = await counts();
    expect(after.calls - before.calls).toBe(2);
    expect(after.statsCalls - before.statsCalls).toBe(1);
    expect(after.kvReads - before.kvReads).toBe(4);
    expect(after.rowsWritten - before.rowsWritten).toBe(4);
    expect(alarms).toEqual([42]); // the real method still ran
    // Other requests are the wrapped Worker's.
    expect(benchEndpoint(new Request("http://bench/mcp", { method: "POST" }))).toBeNull();
  });
});

describe("CPU reader", () => {
  it("reads the CPU time a process spent, from the kernel's counters", async () => {
    // The child spins until it has used 300 ms of its own CPU, says so, then sleeps.
    const child = spawn(
      process.execPath,
      [
        "-e",
        "const t=process.cpuUsage();while((process.cpuUsage(t).user+process.cpuUsage(t).system)<300e3){}console.log('spent');setInterval(()=>{},1e6)",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      await once(child.stdout!, "data");
      // Since it started: at least 300 ms less one clock tick (10 ms); node's start-up only adds.
      expect(cpuMs([child.pid!])).toBeGreaterThanOrEqual(290);
      // Asleep, it spends (next to) nothing.
      const idleBefore = cpuMs([child.pid!]);
      await new Promise((r) => setTimeout(r, 300));
      expect(cpuMs([child.pid!]) - idleBefore).toBeLessThanOrEqual(20);
    } finally {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
    // A process that is gone is an error, not zero CPU.
    expect(() => cpuMs([child.pid!])).toThrow(/is gone/);
  });

  it("finds no wrangler dev where none listens", () => {
    expect(() => wranglerProcesses(1)).toThrow(/no wrangler dev process with --port 1/);
  });
});
