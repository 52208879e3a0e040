/**
 * `npm run check:budgets` (run by .ci/run before the tests): the two performance targets
 * that a code change alone can blow, as a cheap pass/fail check (about half a minute on
 * 2 cores). The budgets and the measurements are bench/'s (bench/bundle.ts,
 * bench/hot-path.ts); `npm run bench:gateway` prints the full figures.
 *
 * - bundle: the shipped Worker (`wrangler deploy --dry-run`, minified per wrangler.toml)
 *   gzipped must stay under GZIP_BUDGET_BYTES (100 KiB);
 * - hot path: the sum of the per-request stages (bench/hot-path.ts) must stay under
 *   HOT_PATH_BUDGET_US (0.2 ms). A loaded CI machine only makes a round slower, never
 *   faster, so the check takes the best of ROUNDS short rounds: a code change that blows
 *   the budget fails every round, a busy neighbour does not fail them all.
 *
 * Exits 1 with a FAIL line per blown budget.
 */
import { build, GZIP_BUDGET_BYTES } from "../bench/bundle.ts";
import { HOT_PATH_BUDGET_US, measureHotPath } from "../bench/hot-path.ts";

const ROUNDS = 3;
const ITERATIONS = 4_000;
const WARMUP = 1_000;

const started = performance.now();
const bundle = await build(true);
const rounds: number[] = [];
for (let i = 0; i < ROUNDS; i++) rounds.push((await measureHotPath(ITERATIONS, WARMUP)).hotPathUs);
const hotPathUs = Math.min(...rounds);

const checks: Array<[ok: boolean, line: string]> = [
  [bundle.gzipBytes < GZIP_BUDGET_BYTES, `bundle < ${GZIP_BUDGET_BYTES / 1024} KiB gzipped: ${(bundle.gzipBytes / 1024).toFixed(1)} KiB (${(bundle.bytes / 1024).toFixed(1)} KiB minified)`],
  [hotPathUs < HOT_PATH_BUDGET_US, `hot path < ${HOT_PATH_BUDGET_US / 1000} ms per request: ${(hotPathUs / 1000).toFixed(3)} ms (best of ${ROUNDS} rounds of ${ITERATIONS}: ${rounds.map((us) => (us / 1000).toFixed(3)).join(", ")} ms; Node ${process.version})`],
];
for (const [ok, line] of checks) console.log(`${ok ? "PASS" : "FAIL"}  ${line}`);
console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
if (checks.some(([ok]) => !ok)) process.exitCode = 1;
