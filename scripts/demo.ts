/**
 * `npm run demo`: an agent (the official MCP SDK `Client` with `withTollbooth`) runs a
 * burst of tool calls through the gateway started by `npm start`, and prints one line
 * per call under a header — the HTTP statuses seen, what admitted it (`bucket`, `token (18 left)`,
 * `402 → solved in 9 ms`), the result (or the tool's own error text), the time — and a summary.
 *
 * When it cannot connect it says which part failed and how: no gateway answers at GATEWAY_URL
 * (no connection), the gateway answered for its origin (502 unreachable, 504 timeout), the
 * gateway refuses its configuration (500 misconfigured), GATEWAY_URL is not the gateway's MCP
 * endpoint, or the origin itself has nothing at that path (usually ORIGIN_URL ending in `/mcp`).
 *
 * Env: GATEWAY_URL (default http://127.0.0.1:8787/mcp), CALLS (default 30), TOOL (default echo).
 * Exit code 0 when every call succeeded, 1 otherwise.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type SolveEvent, withTollbooth } from "../packages/tollbooth-client/src/index.ts";
import { CREDITS_HEADER, WELL_KNOWN } from "../shared/wire/headers.ts";
import { cell } from "./decision-lines.ts";

const gatewayUrl = new URL(process.env.GATEWAY_URL ?? "http://127.0.0.1:8787/mcp");
const calls = Number(process.env.CALLS ?? 30);
const tool = process.env.TOOL ?? "echo";

/** One POST round trip as the agent's transport saw it, below the resolver. */
interface Exchange {
  status: number;
  /** `Tollbooth-Credits` of the answer: credits left on the token that paid, or was minted. */
  credits: string | null;
  /** The start of the body of an answer that is not 2xx. */
  body?: string;
}
let exchanges: Exchange[] = [];
const recordingFetch = async (url: string | URL, init?: RequestInit) => {
  const res = await fetch(url, init);
  if (init?.method === "POST") {
    const ex: Exchange = { status: res.status, credits: res.headers.get(CREDITS_HEADER) };
    if (!res.ok) ex.body = (await res.clone().text()).slice(0, 400);
    exchanges.push(ex);
  }
  return res;
};
let solves: SolveEvent[] = [];
const client = new Client({ name: "tollbooth-demo", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(gatewayUrl, {
  fetch: withTollbooth(recordingFetch, { onSolve: (e) => solves.push(e) }),
});

/** The `message` of a JSON error body (tollbooth's `{error, message}` or a JSON-RPC error), else null. */
function jsonMessage(body: string | undefined): { error?: string; message: string } | null {
  try {
    const b = JSON.parse(body ?? "") as { error?: unknown; message?: unknown };
    if (typeof b.error === "string" && typeof b.message === "string") return { error: b.error, message: b.message };
    if (b.error && typeof b.error === "object" && typeof (b.error as { message?: unknown }).message === "string")
      return { message: (b.error as { message: string }).message };
  } catch {
    // not JSON
  }
  return null;
}

/** Why connecting failed, naming the part that failed (gateway, origin, configuration, URL). */
async function diagnose(err: Error, seen: Exchange | undefined): Promise<string> {
  const policyUrl = new URL(WELL_KNOWN, gatewayUrl);
  let published: { endpoint?: string; routes?: Array<{ endpoint: string }> } | null = null;
  try {
    const res = await fetch(policyUrl, { signal: AbortSignal.timeout(5_000) });
    published = res.ok ? ((await res.json()) as typeof published) : {};
  } catch (probe) {
    const cause = (probe as { cause?: { code?: string } }).cause?.code ?? (probe as Error).message;
    return `Cannot reach the gateway at ${gatewayUrl.origin} (${cause}: no connection). Start it with \`npm start\` (it prints the URL to use), or set GATEWAY_URL.`;
  }
  if (seen === undefined) return `The gateway at ${gatewayUrl.origin} answers, but connecting failed before any answer: ${err.message}`;
  const said = jsonMessage(seen.body);
  const text =
    said?.message ??
    seen.body
      ?.replace(/<[^>]*>/g, " ")
      .replace(/\s+/g, " ")
      .trim() ??
    "";
  if (seen.status === 502 || seen.status === 504) {
    return `The gateway at ${gatewayUrl.origin} is up, but its origin ${seen.status === 504 ? "did not answer in time" : "could not be reached"} (${seen.status}: ${text}). Start the origin, or fix ORIGIN_URL (npm start prints the origin it fronts).`;
  }
  if (seen.status === 500 && said?.error === "misconfigured")
    return `The gateway at ${gatewayUrl.origin} refuses its configuration (500): ${said.message}`;
  const endpoints = published?.routes ? published.routes.map((r) => r.endpoint) : published?.endpoint ? [published.endpoint] : [];
  if (seen.status === 404 && endpoints.length > 0 && !endpoints.includes(gatewayUrl.pathname)) {
    return `${gatewayUrl.pathname} is not an MCP endpoint of the gateway (it answered 404${text ? `: ${text}` : ""}). Its endpoints: ${endpoints.map((e) => new URL(e, gatewayUrl).href).join(", ")}; set GATEWAY_URL to one.`;
  }
  if (seen.status === 404 && said === null) {
    return `The gateway at ${gatewayUrl.origin} forwarded to its origin, which answered 404 (${text.slice(0, 120)}): the origin has no MCP endpoint at ${gatewayUrl.pathname} behind it. ORIGIN_URL is the origin's base URL, without ${gatewayUrl.pathname} (the same for a route's origin).`;
  }
  return `The gateway at ${gatewayUrl.origin} answered ${seen.status}${text ? `: ${text}` : ""} (${err.message.slice(0, 200)})`;
}

try {
  await client.connect(transport);
} catch (err) {
  console.error(await diagnose(err as Error, exchanges.at(-1)));
  process.exit(1);
}
console.log(`agent connected to ${gatewayUrl}; ${calls} call${calls === 1 ? "" : "s"} of ${tool}\n`);

const WIDTHS = { call: 5, http: 12, by: 32, result: 40 };
console.log(
  `${cell("call", WIDTHS.call)}  ${cell("HTTP", WIDTHS.http)}  ${cell("admitted by", WIDTHS.by)}  ${cell("result", WIDTHS.result)}  ${"time".padStart(8)}`,
);

const allSolves: SolveEvent[] = [];
const by = { bucket: 0, token: 0, solved: 0 };
let ok = 0;
const started = performance.now();
for (let i = 1; i <= calls; i++) {
  exchanges = [];
  solves = [];
  const t0 = performance.now();
  let outcome: string;
  try {
    const result = await client.callTool({ name: tool, arguments: tool === "echo" ? { message: `call ${i}` } : {} });
    if (result.isError) {
      const content = Array.isArray(result.content) ? (result.content as Array<{ type: string; text?: string }>) : [];
      const text = content
        .filter((c) => c.type === "text" && c.text)
        .map((c) => c.text)
        .join(" ")
        .replace(/\s+/g, " ")
        .trim();
      outcome = `tool error: ${text || "(no message)"}`;
    } else {
      outcome = "ok";
      ok++;
    }
  } catch (err) {
    outcome = `FAILED ${(err as Error).message.replace(/\s+/g, " ")}`;
  }
  const ms = performance.now() - t0;
  allSolves.push(...solves);
  const last = exchanges.at(-1);
  let admitted = "-";
  if (solves[0]) {
    admitted = `${exchanges[0]?.status ?? 402} → solved in ${solves[0].ms.toFixed(0)} ms (${solves[0].difficulty} bits)`;
    by.solved++;
  } else if (last && last.status < 300 && last.credits !== null) {
    admitted = `token (${last.credits} left)`;
    by.token++;
  } else if (last && last.status < 300) {
    admitted = "bucket";
    by.bucket++;
  }
  const http = exchanges.map((e) => e.status).join("→");
  const line = `${cell(`#${String(i).padStart(3)}`, WIDTHS.call)}  ${cell(http, WIDTHS.http)}  ${cell(admitted, WIDTHS.by)}  ${cell(outcome, WIDTHS.result)}  ${`${ms.toFixed(0)} ms`.padStart(8)}`;
  console.log(line);
  // A message cut to fit the column is printed whole once, below its line.
  if (outcome !== "ok" && [...outcome].length > WIDTHS.result) console.log(`       ${outcome}`);
}
const total = performance.now() - started;
await client.close();

const solveMs = allSolves.map((s) => s.ms).sort((a, b) => a - b);
const median = solveMs.length ? solveMs[Math.floor(solveMs.length / 2)]! : 0;
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
console.log(
  `\nsummary: ${ok}/${calls} calls succeeded: ${by.bucket} from the bucket, ${plural(allSolves.length, "challenge", "challenges")} solved` +
    `${allSolves.length ? ` (median solve ${median.toFixed(0)} ms)` : ""}, ${by.token} on a token; ${(total / 1000).toFixed(1)} s in all, no human involved.`,
);
process.exit(ok === calls ? 0 : 1);
