/**
 * `npm run demo`: an agent (the official MCP SDK `Client` with `withTollbooth`) runs a
 * burst of tool calls through the gateway started by `npm start`, and prints one line
 * per call (HTTP statuses seen, whether a challenge was solved, solve time) and a summary.
 *
 * Env: GATEWAY_URL (default http://127.0.0.1:8787/mcp), CALLS (default 30), TOOL (default echo).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { withTollbooth, type SolveEvent } from "../packages/tollbooth-client/src/index.ts";

const gatewayUrl = new URL(process.env.GATEWAY_URL ?? "http://127.0.0.1:8787/mcp");
const calls = Number(process.env.CALLS ?? 30);
const tool = process.env.TOOL ?? "echo";

// Record the HTTP statuses of each POST round trip, below the resolver.
let statuses: number[] = [];
const recordingFetch = async (url: string | URL, init?: RequestInit) => {
  const res = await fetch(url, init);
  if (init?.method === "POST") statuses.push(res.status);
  return res;
};
let solves: SolveEvent[] = [];
const client = new Client({ name: "tollbooth-demo", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(gatewayUrl, {
  fetch: withTollbooth(recordingFetch, { onSolve: (e) => solves.push(e) }),
});

try {
  await client.connect(transport);
} catch (err) {
  console.error(`Cannot reach the gateway at ${gatewayUrl}: ${(err as Error).message}\nStart it first: npm start`);
  process.exit(1);
}
console.log(`agent connected to ${gatewayUrl}; ${calls} calls of ${tool}\n`);

const allSolves: SolveEvent[] = [];
let ok = 0;
const started = performance.now();
for (let i = 1; i <= calls; i++) {
  statuses = [];
  solves = [];
  const t0 = performance.now();
  let outcome: string;
  try {
    const result = await client.callTool({ name: tool, arguments: tool === "echo" ? { message: `call ${i}` } : {} });
    outcome = result.isError ? "tool error" : "ok";
    if (!result.isError) ok++;
  } catch (err) {
    outcome = `FAILED ${(err as Error).message.slice(0, 120)}`;
  }
  const ms = performance.now() - t0;
  const solve = solves[0];
  allSolves.push(...solves);
  const challenge = solve
    ? `solved ${solve.difficulty}-bit challenge in ${solve.ms.toFixed(0)} ms (${solve.hashes} hashes)`
    : "no challenge";
  console.log(`#${String(i).padStart(3)}  ${statuses.join("→").padEnd(8)} ${outcome.padEnd(4)}  ${challenge.padEnd(52)} ${ms.toFixed(0)} ms`);
}
const total = performance.now() - started;
await client.close();

const solveMs = allSolves.map((s) => s.ms).sort((a, b) => a - b);
const median = solveMs.length ? solveMs[Math.floor(solveMs.length / 2)]! : 0;
console.log(
  `\nsummary: ${ok}/${calls} calls succeeded, ${allSolves.length} challenges solved ` +
    `(median solve ${median.toFixed(0)} ms), ${(total / 1000).toFixed(1)} s in all, no human involved.`,
);
process.exit(ok === calls ? 0 : 1);
