/**
 * `npm run bench:adaptive`: the curve of per-caller adaptive difficulty under the default
 * policy, computed with the gateway's own code (shared/limits/bucket.ts for the free bucket,
 * shared/limits/difficulty.ts for the decayed solve count and the difficulty the caller's Durable
 * Object asks) over 10 simulated minutes, for three callers:
 * - a runaway loop at 10 requests/s (cost 1 each),
 * - a busy agent at 1 request/s,
 * - a quiet agent at 1 request per minute.
 * Each request is paid by the free bucket, else by the credits of the current access
 * token, else by solving a new challenge at the difficulty asked right then (the expected
 * work of a solve is 2^difficulty SHA-256 tries). Prints, per minute: solves, the
 * difficulty asked at the minute's end, and the expected work (tries, and seconds on one
 * core at SOLVER_RATE tries/s, the single-core rate `npm run bench:solver` measured).
 * Then 30 quiet minutes for the loop: how its difficulty falls back (every third minute).
 */
import { type BucketState, fullBucket, take } from "../shared/limits/bucket.ts";
import { addSolve, decayed, difficultyFor, NO_SOLVES, type SolveScore } from "../shared/limits/difficulty.ts";
import { parsePolicy } from "../workers/schemes/policy.ts";

/** Tries per second of one core (WebAssembly SIMD solver, docs/solver.md). */
const SOLVER_RATE = 10.64e6;
const policy = parsePolicy(process.env.TOLLBOOTH_POLICY ?? {});
const plan = policy.plans[policy.defaultPlan]!;
const { adaptive } = plan.challenge;

interface Minute {
  minute: number;
  requests: number;
  solves: number;
  difficulty: number;
  work: number;
}

/** Simulate a caller sending one request every `intervalMs` for `minutes`, then `quietMinutes` of nothing. */
function simulate(intervalMs: number, minutes: number, quietMinutes: number): Minute[] {
  let bucket: BucketState = fullBucket(plan.bucket, 0);
  let score: SolveScore = NO_SOLVES;
  let credits = 0;
  const rows: Minute[] = [];
  let row: Minute = { minute: 1, requests: 0, solves: 0, difficulty: plan.challenge.difficulty, work: 0 };
  const endMs = minutes * 60_000;
  for (let t = 0; t < endMs; t += intervalMs) {
    const minute = Math.floor(t / 60_000) + 1;
    if (minute !== row.minute) {
      rows.push(row);
      row = { minute, requests: 0, solves: 0, difficulty: 0, work: 0 };
    }
    row.requests++;
    const free = take(bucket, plan.bucket, 1, t);
    if (free.result.success) bucket = free.state;
    else if (credits >= 1) credits--;
    else {
      const d = difficultyFor(plan.challenge.difficulty, adaptive, decayed(score, adaptive.halfLifeSeconds, t));
      row.solves++;
      row.work += 2 ** d;
      score = addSolve(score, adaptive, t);
      credits = plan.challenge.credits - 1;
    }
    row.difficulty = difficultyFor(plan.challenge.difficulty, adaptive, decayed(score, adaptive.halfLifeSeconds, t));
  }
  rows.push(row);
  for (let q = 1; q <= quietMinutes; q++) {
    const t = endMs + q * 60_000;
    rows.push({
      minute: minutes + q,
      requests: 0,
      solves: 0,
      difficulty: difficultyFor(plan.challenge.difficulty, adaptive, decayed(score, adaptive.halfLifeSeconds, t)),
      work: 0,
    });
  }
  return rows;
}

const fmt = (n: number) =>
  n >= 1e9
    ? `${(n / 1e9).toFixed(2)} G`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(1)} M`
      : n >= 1e3
        ? `${(n / 1e3).toFixed(1)} k`
        : String(Math.round(n));

console.log(
  `policy: bucket ${plan.bucket.capacity} + ${plan.bucket.refillPerSecond}/s, ${plan.challenge.credits} credits per solve, ` +
    `difficulty ${plan.challenge.difficulty} bits, +1 bit per ${adaptive.solvesPerStep} decayed solves (half-life ${adaptive.halfLifeSeconds} s), at most +${adaptive.maxExtraBits}\n`,
);
const callers: Array<[string, number]> = [
  ["loop, 10 requests/s", 100],
  ["agent, 1 request/s", 1_000],
  ["agent, 1 request/min", 60_000],
];
const runs = callers.map(([name, interval]) => [name, simulate(interval, 10, name.startsWith("loop") ? 30 : 0)] as const);
console.log(`| minute | ${runs.map(([name]) => `${name}: solves, bits, work (one core)`).join(" | ")} |`);
console.log(`|---|${runs.map(() => "---|").join("")}`);
for (let m = 0; m < 40; m++) {
  if (m >= 10 && (m + 1) % 3 !== 0) continue;
  const cells = runs.map(([, rows]) => {
    const r = rows[m];
    if (!r) return "";
    return r.requests === 0
      ? `quiet, ${r.difficulty} bits`
      : `${r.solves}, ${r.difficulty} bits, ${fmt(r.work)} tries (${(r.work / SOLVER_RATE).toFixed(2)} s)`;
  });
  console.log(`| ${m + 1} | ${cells.join(" | ")} |`);
}
for (const [name, rows] of runs) {
  const busy = rows.filter((r) => r.requests > 0);
  const work = busy.reduce((s, r) => s + r.work, 0);
  const flat = busy.reduce((s, r) => s + r.solves, 0) * 2 ** plan.challenge.difficulty;
  console.log(
    `${name}: ${busy.reduce((s, r) => s + r.solves, 0)} solves in ${busy.length} min, ${fmt(work / busy.length)} tries/min on average (${(work / busy.length / SOLVER_RATE).toFixed(2)} s of one core per minute); ${flat > 0 ? (work / flat).toFixed(1) : "—"}× the work at a fixed ${plan.challenge.difficulty} bits`,
  );
}
