/**
 * `npm run sim`: the origin ceiling at internet scale, simulated (docs/allocation.md, "The
 * simulation"). Runs the gateway's real bucket, lease, class, shard, root and congestion code
 * with simulated time over 320 locations × 4 isolates, Durable Objects that serve one call at
 * a time (~1,000 calls/s each) with round trips of 10–150 ms, and 100,000 callers — paying
 * customers, verified API keys, runaway loops, honest agents, a flood from 65,536 networks —
 * at 100,000 requests/s for 10 simulated minutes (the flood from minute 1 to minute 7).
 * Prints one table and the congestion curve per 30 s; exits 1 when a Done-when line fails.
 *
 * Knobs (environment): SIM_MINUTES (10), SIM_RPS (100000), SIM_SEED (1), SIM_SHARDS (16).
 */
import { MICRO } from "../../shared/limits/micro-units.ts";
import { ADMISSION_CLASSES } from "../../shared/limits/origin-classes.ts";
import { defaultConfig, runSim, windowAllowance } from "./run.ts";

const num = (name: string, fallback: number): number => {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new TypeError(`${name}=${v}: expected a positive number`);
  return n;
};

const config = defaultConfig({
  minutes: num("SIM_MINUTES", 10),
  rps: num("SIM_RPS", 100_000),
  seed: Math.floor(num("SIM_SEED", 1)),
  shards: Math.floor(num("SIM_SHARDS", 16)),
});
const started = performance.now();
const r = runSim(config);
const wallS = (performance.now() - started) / 1000;
const s = r.stats;

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (x: number) => `${fmt(x * 100, 1)} %`;
const R = r.ceiling.rate / 1000;
const C = r.ceiling.cap / MICRO;
const w1 = s.worstWindow(10);
const w10 = s.worstWindow(100);
const allow1 = windowAllowance(r.ceiling, 1000);
const allow10 = windowAllowance(r.ceiling, 10_000);
const originCalls = s.calls.shard + s.calls.root;
const perRequest = originCalls / s.requests;

const rows: Array<[string, string, string, boolean | null]> = [];
const line = (what: string, value: string, when = "", ok: boolean | null = null) => rows.push([what, value, when, ok]);
line(
  "origin load, worst 1-s window",
  `${fmt(w1.units)} units at ${fmt(w1.atS, 1)} s (${fmt(w1.units / R, 2)} × R; ${pct(w1.units / allow1)} of C + R)`,
  `≤ (C + R) × 1.05 = ${fmt(allow1 * 1.05)}`,
  w1.units <= allow1 * 1.05,
);
line(
  "origin load, worst 10-s window",
  `${fmt(w10.units)} units (${fmt(w10.units / (10 * R), 3)} × 10 R; ${pct(w10.units / allow10)} of C + 10 R)`,
  `≤ (C + 10 R) × 1.05`,
  w10.units <= allow10 * 1.05,
);
const kinds = ["origin", "budget", "ceiling", "unavailable"] as const;
ADMISSION_CLASSES.forEach((name, k) => {
  const f = s.refused[k]!;
  line(
    `refusals, ${name} class (origin / own budget / own ceiling / store timeout)`,
    `${kinds.map((x) => fmt(f[x])).join(" / ")} of ${fmt(s.forwarded[k]! + kinds.reduce((a, x) => a + f[x], 0))} decided`,
  );
});
const vip = s.vipRefused;
line(
  "refusals of paying customers and verified callers (not the loops): origin / timeout",
  `${fmt(vip.origin)} / ${fmt(vip.unavailable)}`,
  "0",
  vip.origin === 0 && vip.unavailable === 0,
);
line(
  "  … by their own budget (caller leases held by other isolates) / ceiling",
  `${fmt(vip.budget)} / ${fmt(vip.ceiling)}`,
  "(see docs/allocation.md)",
);
line(
  "busiest object, calls in one second",
  `${fmt(s.busiest.calls)} (${s.busiest.name}, second ${s.busiest.second})`,
  "≤ 1,000",
  s.busiest.calls <= 1000,
);
line("busiest origin shard, calls in one second", `${fmt(s.busiestShard.calls)} (${s.busiestShard.name})`);
line(
  "worst caller against its allowance",
  `${pct(r.worstCaller.ratio)} (${r.worstCaller.kind}: ${r.worstCaller.what})`,
  "≤ 100 %",
  r.worstCaller.ratio <= 1,
);
line(
  "Durable Object calls per request, origin ceiling (shards + root)",
  `${fmt(perRequest, 4)} (${fmt(s.calls.shard)} shard, ${fmt(s.calls.root)} root)`,
  "≤ 0.1",
  perRequest <= 0.1,
);
line("Durable Object calls per request, callers' objects", `${fmt(s.calls.caller / s.requests, 4)}`);
line("requests decided", `${fmt(s.requests)} (${[...s.requestsByKind].map(([k, n]) => `${k} ${fmt(n)}`).join(", ")})`);
line("origin units forwarded, by class", ADMISSION_CLASSES.map((n, k) => `${n} ${fmt(s.forwarded[k]!)}`).join(", "));
line(
  "units that ended unspent in isolates' origin leases",
  `${fmt(s.expiredLeaseUnits)} (${pct(
    s.expiredLeaseUnits /
      Math.max(
        1,
        s.forwarded.reduce((a, b) => a + b, 0),
      ),
  )} of those forwarded)`,
);
line("proofs of work solved", fmt(s.solves));
line("run time", `${fmt(wallS, 1)} s of wall clock for ${fmt(config.minutes, 2)} simulated minutes`);

console.log(
  `tollbooth simulation — seed ${config.seed}; ${fmt(config.minutes, 2)} simulated minutes; ${fmt(config.rps)} requests/s with the flood (minutes ${fmt(config.minutes * config.flood.from, 1)}–${fmt(config.minutes * config.flood.to, 1)}); ${config.locations} locations × ${config.isolatesPerLocation} isolates; ${config.shards} origin shards`,
);
console.log(`origin ceiling: R = ${fmt(R)} units/s, C = ${fmt(C)} units (a unit is one JSON-RPC message forwarded)\n`);
console.log("| measure | value | Done when | |\n|---|---|---|---|");
for (const [what, value, when, ok] of rows) console.log(`| ${what} | ${value} | ${when} | ${ok === null ? "" : ok ? "ok" : "FAIL"} |`);
console.log("\nThe congestion curve (ℓ at the end of each 30 s; units per second over it):\n");
console.log(
  "| from s | requests/s | origin units/s | paid | verified | worked | free | free refused/s | ℓ | free share | extra bits | price × |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
);
for (const c of s.curve) {
  console.log(
    `| ${c.fromS} | ${fmt(c.requestsPerS)} | ${fmt(c.originPerS)} | ${c.byClass.map((u) => fmt(u)).join(" | ")} | ${fmt(c.freeRefusedPerS)} | ${fmt(c.level, 2)} | ${fmt(c.freeShare, 2)} | ${c.extraBits} | ${fmt(c.priceFactor, 2)} |`,
  );
}
const samples = s.vipSamples.filter((x) => x.why === "origin" || x.why === "unavailable");
if (samples.length > 0) {
  console.log("\nFirst refusals of paying or verified callers at the origin:");
  for (const x of samples.slice(0, 10)) console.log(`- ${fmt(x.atMs / 1000, 3)} s, ${ADMISSION_CLASSES[x.cls]}, ${x.why}: ${x.where}`);
}
const failed = rows.filter((x) => x[3] === false);
if (failed.length > 0) {
  console.log(`\nFAILED: ${failed.map((x) => x[0]).join("; ")}`);
  process.exitCode = 1;
}
