/**
 * The workerd CPU per request of tollbooth and of a bare pass-through, measured the way
 * `npm run bench:gateway` measures it (bench/miniflare-worker.ts: the built bundles under
 * workerd as Miniflare starts it, CPU from /proc) but short and sequential, for
 * `npm run check:budgets` (CI): {@link measureWorkerdCpu}. Also the generated wrangler
 * configs of the bench's tollbooth variants ({@link farTollboothConfig}).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEverything } from "../scripts/stack/everything.ts";
import { type McpSession, openSession } from "./mcp-http.ts";
import { type Bundle, bundleWorker, type MiniflareWorker, startMiniflareWorker } from "./miniflare-worker.ts";
import { cpuMs } from "./proc-cpu.ts";

/**
 * CI's budget for tollbooth's own CPU: workerd CPU per sequential `tools/call`, tollbooth
 * minus the pass-through, at most 4 ms (the target, 0.15 ms, is `npm run bench:gateway`'s;
 * see scripts/ci-budgets.ts for why the budget is wider).
 */
export const WORKERD_CPU_BUDGET_MS = 4;

/**
 * A copy of bench/far-tollbooth/wrangler.toml in `dir/name` with `main` absolute, the network
 * ceiling replaced (or removed, for `null`) and, with `stats: false`, no `Stats` binding.
 * @returns its path
 */
export async function farTollboothConfig(
  dir: string,
  name: string,
  networkLimit: { limit: number; period: 10 | 60 } | null,
  stats = true,
): Promise<string> {
  let toml = await readFile(fileURLToPath(new URL("far-tollbooth/wrangler.toml", import.meta.url)), "utf8");
  toml = toml.replace(/^main = .*$/m, `main = ${JSON.stringify(fileURLToPath(new URL("far-tollbooth/index.ts", import.meta.url)))}`);
  const block = /\[\[ratelimits\]\]\nname = "TOLLBOOTH_NETWORK_LIMIT"\nnamespace_id = "[^"]*"\nsimple = \{[^}]*\}\n/;
  if (!block.test(toml)) throw new Error("bench/far-tollbooth/wrangler.toml has no TOLLBOOTH_NETWORK_LIMIT block to replace");
  toml = toml.replace(
    block,
    networkLimit === null
      ? ""
      : `[[ratelimits]]\nname = "TOLLBOOTH_NETWORK_LIMIT"\nnamespace_id = "1001"\nsimple = { limit = ${networkLimit.limit}, period = ${networkLimit.period} }\n`,
  );
  if (!stats) {
    const binding = /\[\[durable_objects\.bindings\]\]\nname = "TOLLBOOTH_STATS"\nclass_name = "Stats"\n/;
    if (!binding.test(toml)) throw new Error("bench/far-tollbooth/wrangler.toml has no TOLLBOOTH_STATS binding to remove");
    toml = toml.replace(binding, "");
  }
  const sub = join(dir, name);
  await mkdir(sub, { recursive: true });
  const path = join(sub, "wrangler.toml");
  await writeFile(path, toml);
  return path;
}

/** Unmeasured rounds first: the JIT and the caches settle (the first rounds are the slowest). */
const WARMUP_ROUNDS = 2;

/** The result of {@link measureWorkerdCpu}: workerd CPU ms per request, per round. */
export interface WorkerdCpu {
  passthroughMs: number[];
  tollboothMs: number[];
  /** Requests per path per round. */
  requests: number;
}

/** `n` sequential echo calls on one session; throws unless each came back answered. */
async function echoes(session: McpSession, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const reply = await session.request("tools/call", { name: "echo", arguments: { message: `c${i}` } });
    if (reply.status !== 200 || !reply.text.includes(`Echo: c${i}`))
      throw new Error(`echo through ${session.url}: HTTP ${reply.status}: ${reply.text.slice(0, 300)}`);
  }
}

/**
 * Start a server-everything origin, the bare pass-through and tollbooth (every layer of a
 * default deployment, the decision log and `Stats` on, one issued API key) under Miniflare,
 * then `rounds` rounds of `requests` sequential echo calls per path, the paths alternating,
 * after two warm-up rounds: each round's workerd CPU per request, per path. Stops everything.
 * @throws Error when a Worker does not start or a call is not answered
 */
export async function measureWorkerdCpu(rounds = 5, requests = 300): Promise<WorkerdCpu> {
  const origin = await startEverything();
  const dir = await mkdtemp(join(tmpdir(), "tollbooth-cpu-"));
  const bundles: Bundle[] = [];
  const workers: MiniflareWorker[] = [];
  try {
    const passthroughConfig = fileURLToPath(new URL("passthrough-worker/wrangler.toml", import.meta.url));
    const tollConfig = await farTollboothConfig(dir, "network-limit", { limit: 1_000_000, period: 60 });
    bundles.push(...(await Promise.all([bundleWorker(passthroughConfig), bundleWorker(tollConfig)])));
    const key = "ci-budget-key";
    const policy = {
      bucket: { capacity: 1_000_000, refillPerSecond: 100_000 },
      ceiling: { capacity: 1_000_000, refillPerSecond: 100_000 },
      identity: { strategies: ["api-key", "ip"], apiKeys: [{ sha256: createHash("sha256").update(key).digest("hex"), name: "ci" }] },
    };
    const pass = await startMiniflareWorker({ bundle: bundles[0]!, config: passthroughConfig, vars: { ORIGIN_URL: origin.url } });
    workers.push(pass);
    const toll = await startMiniflareWorker({
      bundle: bundles[1]!,
      config: tollConfig,
      vars: {
        ORIGIN_URL: origin.url,
        TOLLBOOTH_SECRET: randomBytes(32).toString("hex"),
        TOLLBOOTH_POLICY: JSON.stringify(policy),
        DO_DELAY_MS: "0",
      },
    });
    workers.push(toll);
    const paths = [
      { worker: pass, session: await openSession(`${pass.url}/mcp`, { "x-api-key": key }), perRequest: [] as number[] },
      { worker: toll, session: await openSession(`${toll.url}/mcp`, { "x-api-key": key }), perRequest: [] as number[] },
    ];
    for (let round = -WARMUP_ROUNDS; round < rounds; round++) {
      for (const p of round % 2 === 0 ? paths : [...paths].reverse()) {
        const before = cpuMs(p.worker.pids);
        await echoes(p.session, requests);
        await new Promise((r) => setTimeout(r, 50));
        if (round >= 0) p.perRequest.push((cpuMs(p.worker.pids) - before) / requests);
      }
    }
    return { passthroughMs: paths[0]!.perRequest, tollboothMs: paths[1]!.perRequest, requests };
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(bundles.map((b) => b.remove()));
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const r = await measureWorkerdCpu();
  console.log(`workerd CPU per request (ms), ${r.requests} sequential calls per round`);
  console.log(`pass-through ${r.passthroughMs.map((x) => x.toFixed(3)).join(" ")}`);
  console.log(`tollbooth    ${r.tollboothMs.map((x) => x.toFixed(3)).join(" ")}`);
}
