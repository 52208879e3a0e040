/**
 * `npm run build [-- --env <name>]`: bundle one environment's Worker as `wrangler deploy --env
 * <name>` would upload it, into `dist/` (`wrangler deploy --dry-run --outdir dist --env <name>`);
 * nothing is uploaded and no account is needed. Default `--env production` (what `npm run deploy`
 * deploys); `--env staging` for `npm run deploy:staging`; `--top-level` for the top-level
 * configuration (`wrangler dev`, `npm start`). Other arguments are passed to wrangler
 * (`--outdir <dir>` replaces `dist`).
 * Exit code: wrangler's (2 for bad usage).
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");

const argv = process.argv.slice(2);
let env: string | undefined = "production";
const rest: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  if (a === "--env" || a === "-e") {
    env = argv[++i];
    if (env === undefined || env === "") {
      console.error("build: --env needs a name (staging, production), or use --top-level");
      process.exit(2);
    }
  } else if (a.startsWith("--env=")) env = a.slice(6);
  else if (a === "--top-level") env = undefined;
  else rest.push(a);
}
const outdir = rest.some((a) => a === "--outdir" || a.startsWith("--outdir=")) ? [] : ["--outdir", "dist"];
const what = env === undefined ? "the top-level configuration (wrangler dev)" : `[env.${env}]`;
console.error(
  `build: ${what} of wrangler.toml into ${outdir.length ? "dist/" : "--outdir"} (wrangler deploy --dry-run: nothing is uploaded)`,
);
const run = spawnSync(
  process.execPath,
  [WRANGLER, "deploy", "--dry-run", ...outdir, ...(env !== undefined ? ["--env", env] : []), ...rest],
  {
    cwd: ROOT,
    stdio: "inherit",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  },
);
process.exit(run.status ?? 1);
