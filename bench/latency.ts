/**
 * `npm run bench:latency`: in one run on this machine,
 * 1. the latency a tollbooth gateway (`wrangler dev`, local workerd) adds to an in-budget
 *    `tools/call` against going direct to the same origin (server-everything), as p50/p99
 *    over CALLS calls sent in alternation (default 400 each, after 50 warm-up calls), with
 *    a bare pass-through Worker under the same `wrangler dev` beside them
 *    (bench/passthrough-worker) to show what the local runtime itself adds;
 * 2. the time `withTollbooth` takes to solve a challenge at the default difficulty
 *    (median, p90, max over SOLVES challenges, default 50), end to end through the gateway.
 * Prints a table; asserts nothing.
 */

import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type FetchLike, type SolveEvent, withTollbooth } from "../packages/tollbooth-client/src/index.ts";
import { startEverything } from "../scripts/stack/everything.ts";
import { startGateway } from "../scripts/stack/gateway.ts";
import { parsePolicy } from "../workers/schemes/policy.ts";

const CALLS = Number(process.env.CALLS ?? 400);
const SOLVES = Number(process.env.SOLVES ?? 50);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function connect(url: string, fetchImpl?: FetchLike): Promise<Client> {
  const client = new Client({ name: "bench", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), fetchImpl ? { fetch: fetchImpl } : {}));
  return client;
}

async function timedCall(client: Client, i: number): Promise<number> {
  const t0 = performance.now();
  const r = await client.callTool({ name: "echo", arguments: { message: `m${i}` } });
  if (r.isError) throw new Error("tool error");
  return performance.now() - t0;
}

const origin = await startEverything();
const generous = parsePolicy({
  bucket: { capacity: 1_000_000, refillPerSecond: 100_000 },
  ceiling: { capacity: 1_000_000, refillPerSecond: 100_000 },
});
const gw = await startGateway({ originUrl: origin.url, policy: { bucket: generous.bucket, ceiling: generous.ceiling } });
const passthrough = await startGateway({
  originUrl: origin.url,
  config: fileURLToPath(new URL("passthrough-worker/wrangler.toml", import.meta.url)),
});
const defaults = parsePolicy(undefined);
const paying = await startGateway({
  originUrl: origin.url,
  policy: { bucket: { capacity: 1, refillPerSecond: 0.0001 }, challenge: { credits: 1 } },
});
try {
  const direct = await connect(`${origin.url}/mcp`);
  const bare = await connect(`${passthrough.url}/mcp`);
  const gated = await connect(`${gw.url}/mcp`);
  for (let i = 0; i < 50; i++) for (const c of [direct, bare, gated]) await timedCall(c, i);
  const d: number[] = [];
  const b: number[] = [];
  const g: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    d.push(await timedCall(direct, i));
    b.push(await timedCall(bare, i));
    g.push(await timedCall(gated, i));
  }
  for (const list of [d, b, g]) list.sort((x, y) => x - y);
  for (const c of [direct, bare, gated]) await c.close();

  const solves: SolveEvent[] = [];
  const agent = await connect(`${paying.url}/mcp`, withTollbooth(fetch, { onSolve: (e) => solves.push(e) }));
  const roundTrips: number[] = [];
  for (let i = 0; i <= SOLVES; i++) roundTrips.push(await timedCall(agent, i));
  await agent.close();
  const ms = solves.map((s) => s.ms).sort((a, b) => a - b);
  const hashes = solves.map((s) => s.hashes).sort((a, b) => a - b);
  const paid = roundTrips.slice(1).sort((a, b) => a - b);

  const f = (x: number) => x.toFixed(2).padStart(8);
  console.log(`tools/call echo, ${CALLS} calls each, alternating, one client each (ms)`);
  console.log(`                        p50       p99`);
  console.log(`direct to origin    ${f(quantile(d, 0.5))}  ${f(quantile(d, 0.99))}`);
  console.log(`bare pass-through  ${f(quantile(b, 0.5))}  ${f(quantile(b, 0.99))}   (wrangler dev, no work)`);
  console.log(`through tollbooth   ${f(quantile(g, 0.5))}  ${f(quantile(g, 0.99))}`);
  console.log(`added vs direct     ${f(quantile(g, 0.5) - quantile(d, 0.5))}  ${f(quantile(g, 0.99) - quantile(d, 0.99))}`);
  console.log(
    `added vs pass-through${f(quantile(g, 0.5) - quantile(b, 0.5)).slice(1)}  ${f(quantile(g, 0.99) - quantile(b, 0.99))}   (tollbooth's own work)`,
  );
  console.log(`\nwithTollbooth solve at the default difficulty (${defaults.challenge.difficulty} bits), ${solves.length} challenges`);
  console.log(
    `solve time (ms)     median ${quantile(ms, 0.5).toFixed(0)}, p90 ${quantile(ms, 0.9).toFixed(0)}, max ${ms.at(-1)!.toFixed(0)}`,
  );
  console.log(
    `hashes              median ${quantile(hashes, 0.5)}, rate ${(hashes.reduce((a, b) => a + b, 0) / ms.reduce((a, b) => a + b, 0) / 1000).toFixed(2)} M/s`,
  );
  console.log(`402 → solve → 200 round trip (ms) median ${quantile(paid, 0.5).toFixed(0)}`);
} finally {
  await gw.close();
  await passthrough.close();
  await paying.close();
  await origin.close();
}
