/**
 * `npm run bench:bundle`: how large is the Worker that `wrangler deploy` would upload?
 *
 * Builds the gateway twice with `wrangler deploy --dry-run` (nothing is uploaded): once
 * without minification (`--no-minify`), once as wrangler.toml ships it (`minify = true`),
 * and prints the size of each `index.js` raw and gzipped (level 9), in bytes and KiB,
 * against the 85 KiB gzipped budget (the performance target itself). Exits 1 when the
 * shipped bundle is over the budget.
 *
 * Other scripts may import `measureBundle()` for the figures.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WRANGLER_BIN = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/**
 * The budget for the shipped bundle, gzipped, in bytes (85 KiB, the target: every tier
 * included, 84.0 KiB since L402's invoice reader became tollbooth's own over `@scure/base`'s
 * bech32): `npm run check:budgets` (CI) fails above it.
 */
export const GZIP_BUDGET_BYTES = 85 * 1024;
/** The performance target for the shipped bundle, gzipped, in bytes (85 KiB; README, Performance): `npm run bench:gateway` reports PASS/FAIL against it. */
export const GZIP_TARGET_BYTES = 85 * 1024;

/** Sizes of one build of the Worker, in bytes. */
export interface BuildSize {
  /** `index.js` as written by wrangler. */
  bytes: number;
  /** `index.js` gzipped at level 9. */
  gzipBytes: number;
}

/** Sizes of the Worker bundle, unminified and as shipped (minified, per wrangler.toml). */
export interface BundleSize {
  raw: BuildSize;
  minified: BuildSize;
}

/**
 * Build a Worker with `wrangler deploy --dry-run --outdir <outdir>` (nothing is uploaded):
 * `index.js` (and any other module) lands in `outdir`.
 * @param config wrangler config path (default: the repository's wrangler.toml)
 * @param minify true: the config's setting; false: `--no-minify`
 * @throws Error with wrangler's output when the build fails
 */
export async function buildWorker(outdir: string, config?: string, minify = true): Promise<void> {
  const args = [
    WRANGLER_BIN,
    "deploy",
    "--dry-run",
    "--outdir",
    outdir,
    ...(config ? ["--config", config] : []),
    ...(minify ? [] : ["--no-minify"]),
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_HIDE_BANNER: "true",
    NO_COLOR: "1",
    WRANGLER_LOG_PATH: join(outdir, "logs"),
  };
  delete env.NODE_ENV; // would be inlined into the bundle
  try {
    await promisify(execFile)(process.execPath, args, { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`wrangler deploy --dry-run failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
}

/**
 * Build the Worker with `wrangler deploy --dry-run --outdir <tmp>` and measure `index.js`.
 * @param minify true: wrangler.toml's setting (minified); false: `--no-minify`
 * @throws Error with wrangler's output when the build fails
 */
export async function build(minify: boolean): Promise<BuildSize> {
  const outdir = await mkdtemp(join(tmpdir(), "tollbooth-bundle-"));
  try {
    await buildWorker(outdir, undefined, minify);
    const js = await readFile(join(outdir, "index.js"));
    return { bytes: js.byteLength, gzipBytes: gzipSync(js, { level: 9 }).byteLength };
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}

/** Build the Worker both ways and measure it. @throws Error when a build fails */
export async function measureBundle(): Promise<BundleSize> {
  const raw = await build(false);
  const minified = await build(true);
  return { raw, minified };
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

if (import.meta.main) {
  const size = await measureBundle();
  const rows: Array<[string, BuildSize]> = [
    ["unminified", size.raw],
    ["minified (shipped)", size.minified],
  ];
  console.log("Worker bundle (wrangler deploy --dry-run, dist index.js)\n");
  console.log("| build | bytes | gzip -9 bytes |");
  console.log("|---|---|---|");
  for (const [name, s] of rows) console.log(`| ${name} | ${s.bytes} (${kib(s.bytes)}) | ${s.gzipBytes} (${kib(s.gzipBytes)}) |`);
  const over = size.minified.gzipBytes > GZIP_BUDGET_BYTES;
  console.log(
    `\nshipped, gzipped: ${kib(size.minified.gzipBytes)} of the ${kib(GZIP_BUDGET_BYTES)} budget: ${over ? "OVER" : "ok"} (target ${kib(GZIP_TARGET_BYTES)}: ${size.minified.gzipBytes <= GZIP_TARGET_BYTES ? "met" : "not met"})`,
  );
  if (over) process.exitCode = 1;
}
