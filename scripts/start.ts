/**
 * `npm start [-- --persist-to <dir>] [-- --json]`: the gateway (`wrangler dev`, 127.0.0.1:8787)
 * in front of an MCP origin.
 *
 * - Settings: every var and secret the Worker reads (ORIGIN_URL, TOLLBOOTH_POLICY,
 *   TOLLBOOTH_ROUTES, TOLLBOOTH_ADMIN_TOKEN, TOLLBOOTH_ADMIN_PATH, TOLLBOOTH_SECRET,
 *   TOLLBOOTH_ORIGIN_SECRET, TOLLBOOTH_LIGHTNING_SECRET, TOLLBOOTH_FACILITATOR_AUTH,
 *   TOLLBOOTH_METRICS_FLUSH_MS, TOLLBOOTH_DECISION_LOG, TOLLBOOTH_DECISION_LOG_SAMPLE — `1`, every
 *   line, unless set: a deployment's default writes one admitted line in 100 —, a route's `originSecret`) from the
 *   environment, else from `.dev.vars` (scripts/start-settings.ts); handed to wrangler dev in a
 *   private settings file (never written to .dev.vars). TOLLBOOTH_SECRET defaults to a random
 *   secret for this run.
 * - Without ORIGIN_URL (and without routes) it starts the bundled origin,
 *   `@modelcontextprotocol/server-everything` in Streamable HTTP mode on 127.0.0.1 (ORIGIN_PORT,
 *   default 3001); routes whose origin is that address get it too. With ORIGIN_URL it fronts that
 *   origin, after checking it is a base URL (a scheme, no `/mcp` at the end) and that something
 *   listens there; each fails at once with the cause.
 * - State (Durable Objects, the local KV of API keys) is kept in `--persist-to <dir>` (or
 *   PERSIST_TO), default `.wrangler/state`: where `npm run keys -- add … --local` writes by default.
 * - GATEWAY_PORT overrides 8787. A gateway that refuses its configuration (500 misconfigured) is
 *   reported at its first answer. Once ready it prints what is on: the MCP URL (one per route),
 *   the policy, the tiers offered, the admin API and dashboard, the state folder.
 * - Each request the gateway decides prints one line (scripts/decision-lines.ts) under a header;
 *   `--json` prints the raw JSON log lines instead. Ctrl-C stops everything.
 * Exit codes: 1 a setting or the origin is wrong, or the gateway did not start; 2 bad usage.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import { createServer } from "node:net";
import { isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { originProblem, parseRoutes, type Route } from "../shared/policy/routes.ts";
import { type Policy, parsePolicy } from "../workers/schemes/policy.ts";
import { DECISION_HEADER, type DecisionPrinter, decisionPrinter } from "./decision-lines.ts";
import { type Everything, startEverything } from "./stack/everything.ts";
import { type Gateway, GatewayMisconfigured, startGateway } from "./stack/gateway.ts";
import { originUrlProblem, probeOrigin, readSettings } from "./start-settings.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** wrangler's own default persistence folder (`wrangler dev`, `wrangler kv … --local`). */
const DEFAULT_STATE = ".wrangler/state";
/** How long the origin's TCP probe waits before going on without an answer. */
const PROBE_MS = 1500;
const USAGE = "usage: npm start [-- --persist-to <dir>] [-- --json]";

function fail(message: string, code = 1): never {
  console.error(`npm start: ${message}`);
  process.exit(code);
}

let args;
try {
  args = parseArgs({
    options: { json: { type: "boolean" }, "persist-to": { type: "string" }, help: { type: "boolean", short: "h" } },
  }).values;
} catch (err) {
  fail(`${(err as Error).message}\n${USAGE}`, 2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

// Ctrl-C at any moment stops what was started (the gateway's wrangler runs in its own process
// group: process.exit() runs scripts/stack/gateway.ts's exit hook, which kills it).
let gateway: Gateway | undefined;
let origin: Everything | undefined;
let printDecisions: DecisionPrinter | undefined;
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  printDecisions?.flush();
  await gateway?.close();
  await origin?.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

// --- Settings, checked before anything starts ---------------------------------------------
const { values, sources } = readSettings(process.env, ROOT);
const from = (name: string) => (sources[name] ? ` (from ${sources[name] === "environment" ? "the environment" : sources[name]})` : "");

let policy: Policy;
try {
  policy = parsePolicy(values.TOLLBOOTH_POLICY);
} catch (err) {
  fail(`${(err as Error).message}${from("TOLLBOOTH_POLICY")}`);
}
let routes: Route[] | null;
try {
  routes = parseRoutes(values.TOLLBOOTH_ROUTES, values.TOLLBOOTH_POLICY);
} catch (err) {
  fail(`${(err as Error).message}${from("TOLLBOOTH_ROUTES")}`);
}

const originPort = Number(process.env.ORIGIN_PORT ?? 3001);
const gatewayPort = Number(process.env.GATEWAY_PORT ?? 8787);
if (!Number.isInteger(originPort) || originPort < 1 || originPort > 65535)
  fail(`ORIGIN_PORT must be a TCP port, got ${JSON.stringify(process.env.ORIGIN_PORT)}`);
if (!Number.isInteger(gatewayPort) || gatewayPort < 1 || gatewayPort > 65535)
  fail(`GATEWAY_PORT must be a TCP port, got ${JSON.stringify(process.env.GATEWAY_PORT)}`);
const bundledUrl = `http://127.0.0.1:${originPort}`;
/** Whether a URL is the bundled origin's address (127.0.0.1 or localhost, ORIGIN_PORT, http). */
const isBundled = (url: string) => {
  const u = new URL(url);
  return u.protocol === "http:" && (u.hostname === "127.0.0.1" || u.hostname === "localhost") && Number(u.port || 80) === originPort;
};

/** Each origin the gateway will forward to, with the setting that names it. */
const targets = routes
  ? routes.map((r, i) => ({
      label: `TOLLBOOTH_ROUTES[${i}] (${JSON.stringify(r.name)}).origin`,
      url: r.origin,
      endpoint: parsePolicy(r.policy).endpoint,
    }))
  : values.ORIGIN_URL !== undefined
    ? [{ label: "ORIGIN_URL", url: values.ORIGIN_URL, endpoint: policy.endpoint }]
    : [];
for (const t of targets) {
  const problem = originUrlProblem(t.label, t.url, t.endpoint);
  if (problem !== null) fail(problem + from(t.label === "ORIGIN_URL" ? "ORIGIN_URL" : "TOLLBOOTH_ROUTES"));
  const other = originProblem(t.url);
  if (other !== null) fail(`${t.label} ${other}`);
}
const needsBundled = (routes === null && values.ORIGIN_URL === undefined) || targets.some((t) => isBundled(t.url));

const persistDir = resolve(ROOT, args["persist-to"] ?? process.env.PERSIST_TO ?? DEFAULT_STATE);
const shownState = (() => {
  const rel = relative(ROOT, persistDir);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? persistDir : rel;
})();

// The gateway's port first (wrangler would otherwise fail after its start-up), then the origins.
const portFree = (port: number) =>
  new Promise<boolean>((done) => {
    const srv = createServer();
    srv.once("error", () => done(false));
    srv.listen({ port, host: "127.0.0.1" }, () => srv.close(() => done(true)));
  });
if (!(await portFree(gatewayPort)))
  fail(`port ${gatewayPort} on 127.0.0.1 is in use (another npm start?): stop it, or choose another with GATEWAY_PORT=…`);
const probes = await Promise.all(
  targets.filter((t) => !(needsBundled && isBundled(t.url))).map(async (t) => ({ t, result: await probeOrigin(t.url, PROBE_MS) })),
);
for (const { t, result } of probes) {
  if (result.ok) continue;
  if (result.unreachable) {
    fail(
      `cannot reach the origin at ${t.url} (${t.label}): ${result.reason}. Start your MCP server first${t.label === "ORIGIN_URL" ? ", or leave ORIGIN_URL unset to run the bundled server-everything" : ""}.`,
    );
  }
  console.warn(`npm start: warning: the origin at ${t.url} (${t.label}): ${result.reason}; starting anyway`);
}

// --- The origin and the gateway -------------------------------------------------------------
if (needsBundled) {
  try {
    origin = await startEverything(originPort);
  } catch (err) {
    const first = (err as Error).message.split("\n").find((l) => /EADDRINUSE/.test(l)) ?? (err as Error).message.split("\n")[0];
    fail(
      `the bundled origin (server-everything) did not start on ${bundledUrl}: ${first}. Choose another port with ORIGIN_PORT=…, or front your own with ORIGIN_URL=…`,
    );
  }
}
const originUrl = values.ORIGIN_URL ?? bundledUrl;
const secretNote = values.TOLLBOOTH_SECRET === undefined ? "TOLLBOOTH_SECRET: random for this run" : "";
const bySource = (source: string) => Object.keys(sources).filter((n) => sources[n] === source);
const settingsLine = [
  bySource("environment").length ? `${bySource("environment").join(", ")} from the environment` : "",
  ...[".dev.vars", ".env"].map((f) => (bySource(f).length ? `${bySource(f).join(", ")} from ${f}` : "")),
  secretNote,
]
  .filter(Boolean)
  .join("; ");
console.log(`settings: ${settingsLine || "none set (defaults)"}`);
if (routes === null) {
  console.log(
    origin
      ? `origin:   ${origin.url}   (bundled server-everything, Streamable HTTP: a base URL, as ORIGIN_URL takes it; the gateway appends each request's path)`
      : `origin:   ${originUrl}${from("ORIGIN_URL")}; not started here`,
  );
} else if (origin) {
  console.log(`origin:   ${origin.url}   (bundled server-everything, for the routes that name it)`);
}
console.log(`gateway:  starting wrangler dev on 127.0.0.1:${gatewayPort} (state in ${shownState}) …`);

const json = args.json === true;
const printer = decisionPrinter({ json, write: (line) => console.log(line) });
printDecisions = printer;
let ready = false;
const adminToken = values.TOLLBOOTH_ADMIN_TOKEN;
// ORIGIN_URL and TOLLBOOTH_SECRET go as their own options; every other setting as it is.
const { TOLLBOOTH_SECRET: givenSecret, ORIGIN_URL: _originSetting, ...otherSettings } = values;
try {
  gateway = await startGateway({
    originUrl,
    port: gatewayPort,
    secret: givenSecret ?? randomBytes(32).toString("hex"),
    persistDir,
    // Locally every decision line is printed (a deployment samples admitted ones: wrangler.toml).
    vars: { TOLLBOOTH_DECISION_LOG_SAMPLE: "1", ...otherSettings },
    // The decision log, from the moment the banner is printed (readiness probes are not shown).
    onOutput: (chunk) => {
      if (ready) printer(chunk);
    },
  });
} catch (err) {
  await origin?.close();
  if (err instanceof GatewayMisconfigured) {
    const named = Object.keys(sources).filter((n) => err.message.includes(n));
    const where = named.map((n) => `${n} is set in ${sources[n] === "environment" ? "the environment" : sources[n]}`).join("; ");
    fail(`the gateway refuses its configuration: ${err.message.replace(/^tollbooth is misconfigured: /, "")}${where ? ` (${where})` : ""}`);
  }
  fail(`the gateway did not start: ${(err as Error).message}`);
}

// --- What is on, as the gateway itself publishes it -----------------------------------------
/** GET a path of the gateway with a given Host header (routes by host); the JSON body and status. */
function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  return new Promise((done, reject) => {
    const req = http.get({ host: "127.0.0.1", port: gatewayPort, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: kept as text
        }
        done({ status: res.statusCode ?? 0, body });
      });
    });
    req.on("error", reject);
  });
}
/** Print what is on (MCP URLs, policy, tiers, admin, state, keys, the demo command). */
async function printBanner(gw: Gateway): Promise<void> {
  const base = gw.url;
  const published = (await get("/.well-known/tollbooth")).body as {
    routes?: Array<{ name: string; match: { host?: string; path: string }; endpoint: string; policyUrl: string }>;
  };
  /** Scheme type → plans offering it, over every route's published policy. */
  const offered: Record<string, Set<string>> = { pow: new Set(), l402: new Set(), x402: new Set() };
  const addOffers = (p: { plans?: Record<string, { challenge?: { types?: string[] } }> }) => {
    for (const [plan, v] of Object.entries(p.plans ?? {})) {
      for (const t of v.challenge?.types ?? []) {
        offered[t] ??= new Set();
        offered[t].add(plan);
      }
    }
  };
  let firstEndpoint = `${base}${policy.endpoint}`;
  if (routes === null) {
    addOffers(published as never);
    console.log(`gateway:  ${base}${policy.endpoint}   <- point your MCP client here`);
  } else {
    for (const [i, r] of (published.routes ?? []).entries()) {
      const policyUrl = new URL(r.policyUrl);
      addOffers((await get(policyUrl.pathname, { host: policyUrl.host })).body as Parameters<typeof addOffers>[0]);
      const url = `${base}${r.endpoint}`;
      if (i === 0) firstEndpoint = url;
      const hostNote = r.match.host ? ` with Host: ${r.match.host}${gatewayPort === 80 ? "" : `:${gatewayPort}`}` : "";
      console.log(`route ${r.name}: ${url}${hostNote}   <- point your MCP client here (origin ${routes[i]?.origin ?? "?"})`);
    }
  }
  console.log(`policy:   ${base}/.well-known/tollbooth${from("TOLLBOOTH_POLICY")}`);
  console.log(
    `          bucket ${policy.bucket.capacity} units, +${policy.bucket.refillPerSecond}/s; ceiling ${policy.ceiling.capacity} requests, ` +
      `+${policy.ceiling.refillPerSecond}/s; challenge ${policy.challenge.difficulty} bits for ${policy.challenge.credits} credits; ` +
      `token ${policy.token.ttlSeconds} s`,
  );
  console.log(
    `          costs: default ${policy.costs.default}, ${JSON.stringify(policy.costs.methods)}, tools ${JSON.stringify(policy.costs.tools)}`,
  );
  console.log(
    `          callers: ${policy.identity.strategies.join(" → ")}${policy.identity.jwt ? "" : " (jwt: not configured)"}; plans: ${Object.keys(policy.plans).join(", ")}; ` +
      `over budget: ${policy.overBudget}; origin ceiling: ${policy.originCeiling ? `${policy.originCeiling.capacity} + ${policy.originCeiling.refillPerSecond}/s` : "off"}; network ceiling: wrangler.toml [[ratelimits]]`,
  );
  const allPolicies = [policy, ...(routes ?? []).map((r) => parsePolicy(r.policy))];
  const tier = (type: string, name: string, offReason: string) =>
    offered[type]!.size ? `${name}: on (plans ${[...offered[type]!].join(", ")})` : `${name}: off (${offReason})`;
  console.log(
    `tiers:    ${[
      tier("pow", "proof-of-work", "no plan gives credits for a solution"),
      tier(
        "l402",
        "L402 (Lightning)",
        allPolicies.some((p) => p.lightning) ? "no plan sets an `l402` price" : "the policy sets no `lightning` backend",
      ),
      tier(
        "x402",
        "x402 (USDC)",
        allPolicies.some((p) => p.facilitator) ? "no plan sets an `x402` price" : "the policy sets no `facilitator`",
      ),
    ].join("; ")}`,
  );
  const adminPath = (values.TOLLBOOTH_ADMIN_PATH ?? "/admin").replace(/\/+$/, "") || "/admin";
  if (adminToken === undefined) {
    console.log(
      "admin:    off (set TOLLBOOTH_ADMIN_TOKEN, at least 16 characters, to turn on the admin API and dashboard: TOLLBOOTH_ADMIN_TOKEN=$(openssl rand -hex 32) npm start)",
    );
  } else {
    const check = await get(`${adminPath}/policy`, { authorization: `Bearer ${adminToken}` });
    if (check.status === 200) {
      console.log(
        `admin:    ${base}${adminPath}   the dashboard (its token: TOLLBOOTH_ADMIN_TOKEN, from ${sources.TOLLBOOTH_ADMIN_TOKEN === "environment" ? "the environment" : sources.TOLLBOOTH_ADMIN_TOKEN})`,
      );
      console.log(`          API: curl -H "Authorization: Bearer $TOLLBOOTH_ADMIN_TOKEN" ${base}${adminPath}/stats   (docs/admin.md)`);
    } else {
      console.log(
        `admin:    ${base}${adminPath} answered ${check.status} with the token: ${typeof check.body === "string" ? check.body.slice(0, 200) : JSON.stringify(check.body).slice(0, 200)}`,
      );
    }
  }
  console.log(`state:    ${shownState}   (kept between runs; another folder: npm start -- --persist-to <dir>)`);
  if (policy.identity.strategies.includes("api-key")) {
    const persistArg = shownState === DEFAULT_STATE ? DEFAULT_STATE : JSON.stringify(shownState).slice(1, -1);
    console.log(
      `keys:     npm run keys -- add <name> --local --persist-to ${persistArg}   (callers send it in ${policy.identity.apiKeyHeader})`,
    );
  }
  // The demo's own default is http://127.0.0.1:8787/mcp: name the URL whenever this one differs.
  const demo = firstEndpoint === "http://127.0.0.1:8787/mcp" ? "npm run demo" : `GATEWAY_URL=${firstEndpoint} npm run demo`;
  console.log(`try:      ${demo}        (Ctrl-C here stops the gateway${origin ? " and the origin" : ""})`);
}

try {
  await printBanner(gateway);
} catch (err) {
  console.warn(`npm start: warning: could not read what the gateway publishes (${(err as Error).message}); it runs at ${gateway.url}`);
}
const logOff = (values.TOLLBOOTH_DECISION_LOG ?? "on").trim().toLowerCase() === "off";
// The banner's own requests are logged too: let their lines pass before printing any.
await new Promise((r) => setTimeout(r, 300));
ready = true;
if (logOff) console.log(`\ndecisions: off (TOLLBOOTH_DECISION_LOG=off${from("TOLLBOOTH_DECISION_LOG")})`);
else if (!json) console.log(`\n${DECISION_HEADER}`);
