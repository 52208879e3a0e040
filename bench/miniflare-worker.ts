/**
 * A Worker run by workerd as Miniflare starts it, without `wrangler dev`: no wrangler proxy
 * in front, no inspector, console output not forwarded through an inspector (workerd
 * writes it as structured log lines on its stdout; they are counted here and dropped).
 * For `npm run bench:gateway`: the CPU figure of a Worker that is the Worker's own, not
 * `wrangler dev`'s.
 *
 *   const bundle = await bundleWorker("bench/far-tollbooth/wrangler.toml");
 *   const w = await startMiniflareWorker({ bundle, config, vars: { ORIGIN_URL: … } });
 *   await fetch(`${w.url}/mcp`, …); cpuMs(w.pids); w.logLines();
 *   await w.close(); await bundle.remove();
 *
 * The code is the bundle `wrangler deploy --dry-run --outdir` builds (what would be
 * uploaded); the bindings (Durable Objects, rate limits, KV, vars, compatibility date and
 * flags) are what `wrangler dev` derives from the same wrangler config
 * (`unstable_getMiniflareWorkerOptions`), so a generated config with a binding removed
 * runs without it here too. Durable Object storage is Miniflare's ephemeral temporary
 * directory, cleared on close.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { buildWorker } from "./bundle.ts";
import { childWorkerd } from "./proc-cpu.ts";

/** A built Worker bundle (`wrangler deploy --dry-run --outdir`). */
export interface Bundle {
  /** The directory holding `index.js` (and any other module). */
  dir: string;
  /** Deletes the directory. */
  remove(): Promise<void>;
}

/**
 * Build the Worker of a wrangler config as `wrangler deploy` would (minified per the config).
 * @throws Error with wrangler's output when the build fails
 */
export async function bundleWorker(config: string): Promise<Bundle> {
  const dir = await mkdtemp(join(tmpdir(), "tollbooth-mf-bundle-"));
  try {
    await buildWorker(dir, config);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Options of {@link startMiniflareWorker}. */
export interface MiniflareWorkerOptions {
  /** The built code (see {@link bundleWorker}); its `main` must be the config's. */
  bundle: Bundle;
  /** The wrangler config whose bindings the Worker gets. */
  config: string;
  /** Vars and secrets, by name, over the config's `[vars]`. */
  vars: Record<string, string>;
}

/** A running Worker (see {@link startMiniflareWorker}). */
export interface MiniflareWorker {
  /** Base URL on 127.0.0.1. */
  url: string;
  /** The workerd process running it (its CPU counters are the Worker's, its Durable Objects' and its bindings'). */
  pids: number[];
  /** Log lines the Worker wrote (console.log and friends) so far. */
  logLines(): number;
  /** The last few log lines (for error messages). */
  lastLines(): string[];
  /** Stops workerd (Miniflare clears its storage). */
  close(): Promise<void>;
}

/** Only one Miniflare starts at a time: its workerd is told apart from the others as the new child. */
let starting: Promise<unknown> = Promise.resolve();

/**
 * Start the Worker under Miniflare on 127.0.0.1 (a free port) and wait until it listens.
 * @throws Error when workerd fails to start, or no new workerd child process is found
 */
export function startMiniflareWorker(opts: MiniflareWorkerOptions): Promise<MiniflareWorker> {
  const next = starting.then(() => start(opts));
  starting = next.catch(() => undefined);
  return next;
}

async function start(opts: MiniflareWorkerOptions): Promise<MiniflareWorker> {
  // modulesRules: the bundle is one ES module (no rules to apply, and v5 options have none).
  const { modulesRules: _, ...workerOptions } = unstable_getMiniflareWorkerOptions(opts.config).workerOptions;
  let lines = 0;
  const tail: string[] = [];
  const before = new Set(childWorkerd());
  const worker = {
    ...workerOptions,
    name: "tollbooth-bench",
    rootPath: opts.bundle.dir,
    modules: true,
    scriptPath: "index.js",
    bindings: { ...(workerOptions.bindings as Record<string, unknown> | undefined), ...opts.vars },
  };
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      handleStructuredLogs: (log) => {
        lines++;
        tail.push(log.message.slice(0, 500));
        if (tail.length > 5) tail.shift();
      },
      workers: [worker],
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  let url: URL;
  try {
    url = await mf.ready;
  } catch (err) {
    await mf.dispose().catch(() => undefined);
    throw err;
  }
  const pids = childWorkerd().filter((pid) => !before.has(pid));
  if (pids.length !== 1) {
    await mf.dispose();
    throw new Error(`Miniflare started, but ${pids.length} new workerd child processes were found (${pids.join(", ")})`);
  }
  return {
    url: url.origin,
    pids,
    logLines: () => lines,
    lastLines: () => [...tail],
    close: () => mf.dispose(),
  };
}
