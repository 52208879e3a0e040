/**
 * Builds the publishable packages from their sources, packages/<name>/src (and the part of
 * shared/ they import, shared/wire/); nothing is copied by hand:
 *
 *   node packages/build.ts            # both (npm run build:packages)
 *   node packages/build.ts client     # packages/tollbooth-client/dist (its `prepack`)
 *   node packages/build.ts bridge     # packages/tollbooth-bridge/dist (its `prepack`)
 *
 * For each: empties dist/, runs `tsc -p packages/<dir>/tsconfig.json` (JavaScript + .d.ts),
 * copies the repository's LICENSE into the package folder (its `files` ship it; the copy is
 * not committed, so there is one license text), points the solver's worker pool at the
 * emitted `worker.js` (see tollbooth-client/src/solver/pool.ts),
 * and checks what a published package must hold: the package name and version of
 * packages/names.json, nothing of shared/ but shared/wire/ (the gateway's code never ships),
 * no `.ts` module specifier left in the JavaScript, the bin's shebang.
 * @throws Error (exit code 1) when tsc fails or a check does not hold
 */
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const TSC = join(HERE, "../node_modules/typescript/bin/tsc");

/** The package names and version, kept in one place (packages/names.json). */
export const NAMES = JSON.parse(readFileSync(join(HERE, "names.json"), "utf8")) as { client: string; bridge: string; version: string };

/** Which package: its directory under packages/ and its name. */
export const PACKAGES = {
  client: { dir: join(HERE, NAMES.client), name: NAMES.client },
  bridge: { dir: join(HERE, NAMES.bridge), name: NAMES.bridge },
} as const;

/**
 * Where the solver lands in both packages' dist/ (the tree mirrors the repository's, see
 * packages/tsconfig.json; the bridge carries a compiled copy of the client).
 */
const SOLVER_DIR = "packages/tollbooth-client/src/solver";

/** Every file under `dir`, recursively (absolute paths). */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

function fail(message: string): never {
  throw new Error(`packages/build.ts: ${message}`);
}

/** Build one package into its dist/. */
export function buildPackage(which: keyof typeof PACKAGES): void {
  const { dir, name } = PACKAGES[which];
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
    name: string;
    version: string;
    bin?: Record<string, string>;
  };
  if (manifest.name !== name) fail(`${dir}/package.json names ${manifest.name}, packages/names.json says ${name}`);
  if (manifest.version !== NAMES.version) fail(`${name} is version ${manifest.version}, packages/names.json says ${NAMES.version}`);

  const dist = join(dir, "dist");
  rmSync(dist, { recursive: true, force: true });
  copyFileSync(join(HERE, "../LICENSE"), join(dir, "LICENSE"));
  execFileSync(process.execPath, [TSC, "-p", join(dir, "tsconfig.json")], { stdio: "inherit" });

  // The pool starts workers on `new URL("./worker.ts", import.meta.url)` (a literal, for
  // bundlers); in the package the file is worker.js.
  const pool = join(dist, SOLVER_DIR, "pool.js");
  const source = readFileSync(pool, "utf8");
  const rewritten = source.replaceAll('new URL("./worker.ts", import.meta.url)', 'new URL("./worker.js", import.meta.url)');
  const count = source.split('new URL("./worker.ts", import.meta.url)').length - 1;
  if (count !== 2) fail(`expected 2 worker URLs in ${pool}, found ${count}`);
  writeFileSync(pool, rewritten);
  if (!existsSync(join(dist, SOLVER_DIR, "worker.js"))) fail(`${SOLVER_DIR}/worker.js was not emitted`);

  for (const file of walk(dist)) {
    const path = relative(dist, file).split(sep).join("/");
    if (!path.startsWith("packages/") && !path.startsWith("shared/wire/"))
      fail(`${name} would ship ${path}: the agent packages import only shared/wire/ of shared/`);
  }
  for (const file of walk(dist).filter((f) => f.endsWith(".js"))) {
    const text = readFileSync(file, "utf8");
    const left = text.match(/(?:from\s*|import\s*\(\s*|new URL\(\s*)["'][^"']+\.ts["']/);
    if (left) fail(`${file} still refers to a .ts module: ${left[0]}`);
  }
  for (const bin of Object.values(manifest.bin ?? {})) {
    const file = join(dir, bin);
    if (!readFileSync(file, "utf8").startsWith("#!/usr/bin/env node\n")) fail(`${file} has no #!/usr/bin/env node line`);
    chmodSync(file, 0o755);
  }
}

const requested = process.argv[2];
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  if (requested !== undefined && !(requested in PACKAGES)) {
    process.stderr.write(`usage: node packages/build.ts [client|bridge]\n`);
    process.exit(2);
  }
  const which = requested === undefined ? (Object.keys(PACKAGES) as (keyof typeof PACKAGES)[]) : [requested as keyof typeof PACKAGES];
  for (const w of which) {
    buildPackage(w);
    process.stdout.write(`built ${PACKAGES[w].name} in ${join(PACKAGES[w].dir, "dist")}\n`);
  }
}
