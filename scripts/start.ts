/**
 * `npm start`: the gateway (`wrangler dev`, 127.0.0.1:8787) in front of an MCP origin.
 *
 * - Without ORIGIN_URL it starts the bundled origin, `@modelcontextprotocol/server-everything`
 *   in Streamable HTTP mode on 127.0.0.1 (ORIGIN_PORT, default 3001).
 * - With ORIGIN_URL=http://127.0.0.1:PORT it fronts that origin and starts none.
 * TOLLBOOTH_POLICY (JSON) is validated before anything starts; TOLLBOOTH_SECRET defaults to
 * a random secret for this run; GATEWAY_PORT overrides 8787. Ctrl-C stops everything.
 * Each request the gateway decides prints one line (scripts/decision-lines.ts); `npm start --
 * --json` prints the raw JSON log lines instead.
 */
import { randomBytes } from "node:crypto";
import { parsePolicy } from "../workers/schemes/policy.ts";
import { startEverything, type Everything } from "./stack/everything.ts";
import { startGateway } from "./stack/gateway.ts";
import { decisionPrinter } from "./decision-lines.ts";

let policy;
try {
  policy = parsePolicy(process.env.TOLLBOOTH_POLICY);
} catch (err) {
  console.error(`npm start: ${(err as Error).message}`);
  process.exit(1);
}

let origin: Everything | undefined;
const originUrl = process.env.ORIGIN_URL ?? (origin = await startEverything(Number(process.env.ORIGIN_PORT ?? 3001))).url;
if (origin) console.log(`origin:  server-everything (Streamable HTTP) at ${origin.url}/mcp`);
else console.log(`origin:  ${originUrl} (from ORIGIN_URL; not started here)`);

const printDecisions = decisionPrinter({ json: process.argv.includes("--json"), write: (line) => console.log(line) });
let ready = false;
const gateway = await startGateway({
  originUrl,
  port: Number(process.env.GATEWAY_PORT ?? 8787),
  secret: process.env.TOLLBOOTH_SECRET ?? randomBytes(32).toString("hex"),
  ...(process.env.TOLLBOOTH_POLICY ? { policy: JSON.parse(process.env.TOLLBOOTH_POLICY) } : {}),
  // The decision log: one readable line per request (`npm start -- --json`: the raw JSON lines),
  // from the moment the gateway is ready (its readiness probes are not printed).
  onOutput: (chunk) => {
    if (ready) printDecisions(chunk);
  },
}).catch(async (err) => {
  await origin?.close();
  console.error(`npm start: the gateway did not start: ${(err as Error).message}`);
  process.exit(1);
});

console.log(`gateway: ${gateway.url}${policy.endpoint}   <- point your MCP client here`);
console.log(`policy:  ${gateway.url}/.well-known/tollbooth`);
console.log(
  `         bucket ${policy.bucket.capacity} units, +${policy.bucket.refillPerSecond}/s; ceiling ${policy.ceiling.capacity} requests, ` +
    `+${policy.ceiling.refillPerSecond}/s; challenge ${policy.challenge.difficulty} bits for ${policy.challenge.credits} credits; ` +
    `token ${policy.token.ttlSeconds} s`,
);
console.log(`         costs: default ${policy.costs.default}, ${JSON.stringify(policy.costs.methods)}, tools ${JSON.stringify(policy.costs.tools)}`);
console.log(
  `         callers: ${policy.identity.strategies.join(" → ")}${policy.identity.jwt ? "" : " (jwt: not configured)"}; plans: ${Object.keys(policy.plans).join(", ")}; ` +
    `over budget: ${policy.overBudget}; origin ceiling: ${policy.originCeiling ? `${policy.originCeiling.capacity} + ${policy.originCeiling.refillPerSecond}/s` : "off"}; network ceiling: wrangler.toml [[ratelimits]]`,
);
// The demo's own default is http://127.0.0.1:8787/mcp: name the URL whenever this one differs.
const demoUrl = `${gateway.url}${policy.endpoint}`;
const demo = demoUrl === "http://127.0.0.1:8787/mcp" ? "npm run demo" : `GATEWAY_URL=${demoUrl} npm run demo`;
console.log(`try:     ${demo}        (Ctrl-C here stops the gateway and the origin)`);
ready = true;

const stop = async () => {
  await gateway.close();
  await origin?.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
