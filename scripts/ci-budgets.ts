/**
 * `npm run check:budgets` (run by .ci/run before the tests): the two performance budgets a
 * code change alone can blow, as a cheap pass/fail check (about a minute on 2 cores). The
 * budgets and the measurements are bench/'s; `npm run bench:gateway` prints the full figures
 * and the (tighter) targets.
 *
 * - bundle: the shipped Worker (`wrangler deploy --dry-run`, minified per wrangler.toml)
 *   gzipped must stay within CI_GZIP_BUDGET_BYTES (92 KiB). The bench's target is 85 KiB
 *   (bench/bundle.ts GZIP_BUDGET_BYTES, every tier included — x402's signature check, L402's invoice reader);
 *   the origin allocation (shards, root, classes, congestion: about 7 KiB) took the bundle
 *   from 84 to 90.6 KiB, so CI guards against growth from here while the bench keeps
 *   printing the target as not met (docs/performance.md);
 * - workerd CPU: tollbooth's own CPU per request, where Workers bill it — the workerd process
 *   running the built bundle under Miniflare, its /proc CPU counters over sequential
 *   `tools/call` echo calls (bench/workerd-cpu.ts) — minus a bare pass-through's, must stay
 *   at most WORKERD_CPU_BUDGET_MS (4 ms).
 *
 * Why this budget, and why so wide: the target is 0.15 ms over the pass-through, measured by
 * the bench on a quiet machine; today tollbooth is 1.6–2.5 ms over it on a busy 2-core machine
 * (CPU time per request rises with a neighbour's load: shared caches, shared cores), so a
 * budget near the target would fail every run, and one near today's figure would fail on
 * noise. 4 ms fails a change that doubles tollbooth's own CPU (an app rebuilt per request, a
 * key imported per request) and passes a loaded machine. Each path's figure is its best of
 * ROUNDS rounds, the paths alternating: load only makes a round slower, so the best round is
 * the one least disturbed. The Node in-process hot path (bench/hot-path.ts) is no budget any
 * more: Node runs each WebCrypto call on a thread pool that workerd does not, so its sum says
 * little about the CPU Cloudflare bills; it stays a per-stage profile in the bench.
 *
 * Exits 1 with a FAIL line per blown budget.
 */
import { build } from "../bench/bundle.ts";
import { measureWorkerdCpu, WORKERD_CPU_BUDGET_MS } from "../bench/workerd-cpu.ts";

/** The bundle's CI budget, gzipped bytes: today's 90.6 KiB and room for a fix (see above). */
const CI_GZIP_BUDGET_BYTES = 92 * 1024;
const ROUNDS = 5;
const REQUESTS = 300;

const started = performance.now();
const bundle = await build(true);
const cpu = await measureWorkerdCpu(ROUNDS, REQUESTS);
const pass = Math.min(...cpu.passthroughMs);
const toll = Math.min(...cpu.tollboothMs);
const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");

const checks: Array<[ok: boolean, line: string]> = [
  [
    bundle.gzipBytes <= CI_GZIP_BUDGET_BYTES,
    `bundle ≤ ${CI_GZIP_BUDGET_BYTES / 1024} KiB gzipped: ${(bundle.gzipBytes / 1024).toFixed(1)} KiB (${(bundle.bytes / 1024).toFixed(1)} KiB minified)`,
  ],
  [
    toll - pass <= WORKERD_CPU_BUDGET_MS,
    `workerd CPU per request, tollbooth − pass-through ≤ ${WORKERD_CPU_BUDGET_MS} ms: ${(toll - pass).toFixed(2)} ms (best of ${ROUNDS} rounds of ${REQUESTS} sequential calls: tollbooth ${toll.toFixed(2)} ms [${list(cpu.tollboothMs)}], pass-through ${pass.toFixed(2)} ms [${list(cpu.passthroughMs)}])`,
  ],
];
for (const [ok, line] of checks) console.log(`${ok ? "PASS" : "FAIL"}  ${line}`);
console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
if (checks.some(([ok]) => !ok)) process.exitCode = 1;
