/**
 * `npm run bench:solver`: in one run on this machine, with challenge-shaped salts (32 hex
 * characters, as shared/credentials/challenge.ts mints them),
 * 1. hashes/s of the tollbooth kernel on one core (each path: WebAssembly SIMD, scalar, JS);
 * 2. hashes/s of a plain node:crypto loop, `createHash("sha256").update(salt + nonce).digest()`;
 * 3. hashes/s of one awaited WebCrypto `crypto.subtle.digest` per try;
 * 4. the ratios tollbooth ÷ node:crypto and tollbooth ÷ WebCrypto;
 * 5. worker-pool hashes/s from 1 thread to `os.availableParallelism()`, and as a fraction of linear;
 * 6. solve time (median, p90, max) over SOLVES random challenges (default 60) at 16 and 20
 *    bits, on one core and on all cores, through `solvePow`;
 * then one PASS/FAIL line per target. Each rate is the best of REPS (default 3) fixed
 * wall-clock windows of SECONDS (default 2), after a warm-up; the windows of the pool rows
 * alternate (1, 2, …, n threads, then again), so a burst of other work on the machine costs
 * one window, not a whole row; they are measured first, as they need every core, and print
 * the CPU time the process obtained. Exits 0 whatever the targets say.
 */
import { createHash, randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { type KernelPath, loadKernel, preferredPaths } from "../packages/tollbooth-client/src/solver/kernel.ts";
import { searchInWorkers } from "../packages/tollbooth-client/src/solver/pool.ts";
import { createSearch } from "../packages/tollbooth-client/src/solver/search.ts";
import { solvePow } from "../packages/tollbooth-client/src/solver/solve-pow.ts";

const SECONDS = Number(process.env.SECONDS ?? 2);
const REPS = Number(process.env.REPS ?? 3);
const SOLVES = Number(process.env.SOLVES ?? 60);
const cores = availableParallelism();
const newSalt = () => randomBytes(16).toString("hex");
const mhs = (rate: number) => `${(rate / 1e6).toFixed(2)} M/s`;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Kernel hashes/s on this thread over `seconds` (difficulty 256: never found). */
async function kernelRate(path: KernelPath, seconds: number): Promise<number> {
  const search = createSearch(await loadKernel(path), { salt: newSalt(), difficulty: 256, first: 0, stride: 1 });
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  search.run(() => performance.now() >= end);
  return search.hashes / ((performance.now() - t0) / 1000);
}

function nodeCryptoRate(seconds: number): number {
  const salt = newSalt();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++, n++)
      createHash("sha256")
        .update(salt + String(n))
        .digest();
  }
  return n / ((performance.now() - t0) / 1000);
}

async function webCryptoRate(seconds: number): Promise<number> {
  const salt = newSalt();
  const encoder = new TextEncoder();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++, n++) await crypto.subtle.digest("SHA-256", encoder.encode(salt + String(n)));
  }
  return n / ((performance.now() - t0) / 1000);
}

/**
 * Pool hashes/s with `threads` workers over `seconds` (difficulty 256: stopped by the budget),
 * and the share of `threads` CPUs this process got meanwhile (below 1: other work competed).
 */
async function poolRate(threads: number, seconds: number): Promise<{ rate: number; cpu: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const outcome = await searchInWorkers({ salt: newSalt(), difficulty: 256, threads, maxMs: seconds * 1000 });
  const used = process.cpuUsage(c0);
  const ms = performance.now() - t0;
  return { rate: outcome.hashes / (ms / 1000), cpu: (used.user + used.system) / 1000 / (threads * ms) };
}

async function solveTimes(difficulty: number, threads: number): Promise<{ ms: number[]; hashes: number }> {
  const ms: number[] = [];
  let hashes = 0;
  for (let i = 0; i < SOLVES; i++) {
    const r = await solvePow(newSalt(), difficulty, { threads });
    ms.push(r.ms);
    hashes += r.hashes;
  }
  return { ms: ms.sort((a, b) => a - b), hashes };
}

console.log(`bench:solver — ${cores} logical processors, node ${process.versions.node}, kernel paths here: ${preferredPaths().join(", ")}`);
console.log(`each rate: best of ${REPS} windows of ${SECONDS} s; ${SOLVES} challenges per solve-time row\n`);

// Warm-up: instantiate and tier up every kernel on this thread, and start the workers.
for (const path of preferredPaths()) await kernelRate(path, 0.3);
nodeCryptoRate(0.3);
await webCryptoRate(0.3);
await poolRate(cores, 0.5);
await poolRate(1, 0.3);

// The pool rows need every core: measure them first, right after the warm-up.
const pool: number[] = [];
const cpu: number[] = [];
for (let rep = 0; rep < REPS; rep++) {
  for (let threads = 1; threads <= cores; threads++) {
    const r = await poolRate(threads, SECONDS);
    if (r.rate > (pool[threads] ?? 0)) [pool[threads], cpu[threads]] = [r.rate, r.cpu];
  }
}
const best = preferredPaths()[0]!;
const single: Partial<Record<KernelPath, number>> = {};
let nodeCrypto = 0;
let webCrypto = 0;
for (let rep = 0; rep < REPS; rep++) {
  for (const path of preferredPaths())
    single[path] = Math.max(single[path] ?? 0, await kernelRate(path, path === best ? SECONDS : SECONDS / 3));
  nodeCrypto = Math.max(nodeCrypto, nodeCryptoRate(SECONDS));
  webCrypto = Math.max(webCrypto, await webCryptoRate(SECONDS));
}
const tollbooth = single[best]!;

console.log("one core, hashes/s");
for (const path of preferredPaths()) console.log(`  tollbooth kernel, ${path.padEnd(11)}  ${mhs(single[path]!)}`);
console.log(`  node:crypto createHash loop      ${mhs(nodeCrypto)}`);
console.log(`  WebCrypto subtle.digest, awaited ${mhs(webCrypto)}`);
console.log(`  tollbooth ÷ node:crypto          ${(tollbooth / nodeCrypto).toFixed(1)}×`);
console.log(`  tollbooth ÷ WebCrypto            ${(tollbooth / webCrypto).toFixed(1)}×\n`);

console.log("worker pool, hashes/s (fraction of linear = rate ÷ (threads × 1-thread pool rate);");
console.log("  CPU obtained = this process's CPU time ÷ (threads × wall time) in that window)");
for (let threads = 1; threads <= cores; threads++) {
  const linear = pool[threads]! / (threads * pool[1]!);
  console.log(
    `  ${threads} thread${threads > 1 ? "s" : " "}  ${mhs(pool[threads]!)}  ${(linear * 100).toFixed(0)}% of linear  (CPU obtained ${(cpu[threads]! * 100).toFixed(0)}%: ${mhs(pool[threads]! / (threads * cpu[threads]!))} per CPU-second)`,
  );
}
const all = pool[cores]!;

console.log("\nsolvePow time, ms (median / p90 / max)");
const rows: { label: string; difficulty: number; threads: number; ms: number[] }[] = [];
for (const difficulty of [16, 20]) {
  for (const threads of [1, cores]) {
    const { ms, hashes } = await solveTimes(difficulty, threads);
    rows.push({ label: `d${difficulty}, ${threads} thread${threads > 1 ? "s" : ""}`, difficulty, threads, ms });
    const rate = hashes / (ms.reduce((a, b) => a + b, 0) / 1000);
    console.log(
      `  d${difficulty}, ${threads} thread${threads > 1 ? "s" : " "}  ${quantile(ms, 0.5).toFixed(1)} / ${quantile(ms, 0.9).toFixed(1)} / ${ms.at(-1)!.toFixed(1)}   (${mhs(rate)} over the solves)`,
    );
  }
}
const d20one = rows.find((r) => r.difficulty === 20 && r.threads === 1)!;
const d20median = quantile(d20one.ms, 0.5);

const line = (ok: boolean, text: string) => console.log(`TARGET ${ok ? "PASS" : "FAIL"}  ${text}`);
console.log("");
line(tollbooth >= 5e6, `one core ≥ 5 M hashes/s: ${mhs(tollbooth)}`);
line(tollbooth >= 8 * nodeCrypto, `one core ≥ 8× the node:crypto loop: ${(tollbooth / nodeCrypto).toFixed(1)}×`);
line(all >= 0.9 * cores * pool[1]!, `all ${cores} cores ≥ 0.9 × ${cores} × one core (pool): ${mhs(all)} vs ${mhs(0.9 * cores * pool[1]!)}`);
line(
  all >= 0.9 * cores * tollbooth,
  `all ${cores} cores ≥ 0.9 × ${cores} × one core (calling thread): ${mhs(all)} vs ${mhs(0.9 * cores * tollbooth)}`,
);
line(d20median < 250, `d20 median < 0.25 s on one core: ${(d20median / 1000).toFixed(3)} s`);
