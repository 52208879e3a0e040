/**
 * The origin ceiling under a flood (docs/allocation.md): through `wrangler dev`, in front of
 * a real origin on the MCP SDK's Express app that logs every request it receives, with the
 * time (test/helpers/express-origin.ts), and a Lightning stand-in for the L402 price.
 * - before the flood (BEFORE_S): a `pro` API-key caller (class verified) and a proof-of-work
 *   payer (class worked), each in its budget, and a probe network over its free budget (its
 *   402s sample the price);
 * - the flood (FLOOD_S): NETWORKS networks (`CF-Connecting-IP` names the network under
 *   `wrangler dev`), each within its free budget — a cost-0 `ping` and a cost-1 `tools/call`
 *   every 6 s — together 2.5 × the ceiling's refill (the others ask 0.3 × of it);
 * - after it (AFTER_S): the flood and the probe stop, the pro caller and the payer go on, and
 *   from 4 s after it a second probe network (`late`) runs over its free budget (2 requests a
 *   second; with the others 0.44 × R, under the curve's start) to sample the price a new caller
 *   meets once the load level has fallen (with `fallSeconds: 3`, below the curve's start 5–9 s
 *   after the flood: the root's demand is smoothed, and an isolate learns the level with its
 *   lease calls).
 * Asserted: the pro caller and the payer are never refused; every message the origin
 * received while the flood ran (its own log, each message of a batch counted; T from the
 * flood's first request sent to its last answer) is at most C + R·T (+5 %), and at least
 * 90 % of R·T (the ceiling, not something else, limited it); the flood meets 402s, never a
 * 429, their congestion at the top of the curve with the proof-of-work difficulty and the
 * L402 price raised; in the last 4 s every 402 (of either probe) carries no congestion, at the
 * list difficulty, and the late probe's at the list L402 price (the first probe's network spent
 * its fresh invoices on the flood's changing prices: workers/schemes/l402/offers.ts
 * `INVOICES_PER_NETWORK`). Prints the curve, second by second.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, test } from "vitest";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { formatChallenge, type PowChallenge } from "../../shared/wire/pow.ts";
import { type ExpressOrigin, startExpressOrigin } from "../helpers/express-origin.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";

/** The origin ceiling: C messages, R per second. */
const C = 80;
const R = 8;
const NETWORKS = 60;
/** Each flood network sends one request per this many ms (a ping, then a call, …): 60 networks, 20 requests a second, 2.5 × R. */
const FLOOD_PERIOD_MS = 3_000;
const BEFORE_S = 4;
const FLOOD_S = 20;
const AFTER_S = 16;
const BASE_BITS = 8;
const LIST_SATS = 100;
const PRO_KEY = `tb_${randomBytes(18).toString("base64url")}`;
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

let origin: ExpressOrigin;
let ln: LightningStandin;
let gateway: Gateway;

beforeAll(async () => {
  [origin, ln] = await Promise.all([startExpressOrigin(), startLightningStandin()]);
  gateway = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 10, refillPerSecond: 0.5 },
      challenge: { difficulty: BASE_BITS, credits: 8 },
      costs: { tools: { cheap: 1 } },
      identity: {
        strategies: ["api-key", "ip"],
        apiKeys: [{ sha256: createHash("sha256").update(PRO_KEY).digest("hex"), name: "pro-caller", plan: "pro" }],
      },
      plans: { pro: { bucket: { capacity: 60, refillPerSecond: 5 } } },
      originCeiling: { capacity: C, refillPerSecond: R },
      // Prices fall back within seconds of the flood (the default is 15 s).
      allocation: { congestion: { fallSeconds: 3 } },
      l402: { sats: LIST_SATS, credits: 50 },
      lightning: { backend: "lnd", url: ln.url, timeoutMs: 2_000, invoicesPerSecond: 50 },
    },
    vars: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex },
  });
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all([origin?.close(), ln?.close()]);
});

/** One answer, as a client saw it. */
interface Seen {
  who: "pro" | "pow" | "flood" | "probe" | "late";
  /** Seconds since the flood began (negative before it), when sent. */
  t: number;
  status: number;
  reason?: string;
  layer?: string;
  congestion?: { level: number; freeShare: number; extraBits: number; priceFactor: number; why: string };
  difficulty?: number;
  sats?: number;
}

let rpcId = 0;
const ping = () => ({ jsonrpc: "2.0", id: ++rpcId, method: "ping" });
const cheap = () => ({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "cheap", arguments: {} } });
const sleepUntil = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - performance.now())));

/** POST one JSON-RPC message; what the client sees. */
async function send(who: Seen["who"], t: number, body: object, headers: Record<string, string>): Promise<Seen & { headers: Headers }> {
  const res = await fetch(`${gateway.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  const seen: Seen & { headers: Headers } = { who, t, status: res.status, headers: res.headers };
  const data = res.status === 200 ? undefined : (JSON.parse(text) as { error?: { data?: Record<string, any> } }).error?.data;
  if (data) {
    Object.assign(seen, { reason: data.reason, layer: data.layer, congestion: data.congestion, difficulty: data.difficulty });
    const l402 = (data.challenges as Array<{ type: string; sats?: number }> | undefined)?.find((c) => c.type === "l402");
    if (l402?.sats !== undefined) seen.sats = l402.sats;
  }
  return seen;
}

/** A fresh challenge for `who`, solved: the `Tollbooth-Solution` value. */
async function solved(who: Record<string, string>): Promise<string> {
  const res = await fetch(`${gateway.url}/.well-known/tollbooth/challenge`, { headers: who });
  expect(res.status).toBe(200);
  const { type: _t, header: _h, ...ch } = (await res.json()) as PowChallenge & { type: string; header: string };
  const { nonce } = await solvePow(ch.salt, ch.difficulty);
  return `${formatChallenge(ch).slice("PowChallenge ".length)}, nonce="${nonce}"`;
}

/** Messages in what the origin received (a batch counts each of its messages). */
const messagesIn = (body: unknown) => (Array.isArray(body) ? body.length : 1);

test("a flood of free traffic from 60 networks: the pro caller and the proof-of-work payer are never refused, the origin stays within its ceiling, and the price rises and falls back", async () => {
  origin.reset();
  const seen: Seen[] = [];
  const t0 = performance.now() + BEFORE_S * 1000 + 500;
  const end = t0 + (FLOOD_S + AFTER_S) * 1000;
  const tOf = (ms: number) => (ms - t0) / 1000;
  let floodFirst = Infinity;
  let floodLast = 0;

  /** Every `periodMs` from `fromMs` until `untilMs`, open loop: `fn(i)` (not awaited in turn). */
  const every = async (periodMs: number, fromMs: number, untilMs: number, fn: (i: number) => Promise<void>) => {
    const inFlight: Promise<void>[] = [];
    for (let i = 0; fromMs + i * periodMs < untilMs; i++) {
      await sleepUntil(fromMs + i * periodMs);
      inFlight.push(fn(i));
    }
    await Promise.all(inFlight);
  };

  const start = performance.now() + 200;
  const pro = every(1000, start, end, async () => {
    seen.push(await send("pro", tOf(performance.now()), cheap(), { "x-api-key": PRO_KEY, "cf-connecting-ip": "203.0.113.10" }));
  });
  // The payer: one request every 2 s with its token, a fresh solve before its credits run out (its budget).
  const payer = { "cf-connecting-ip": "203.0.113.20" };
  let token: string | null = null;
  let credits = 0;
  const pow = (async () => {
    for (let i = 0; start + i * 2000 < end; i++) {
      await sleepUntil(start + i * 2000);
      const headers: Record<string, string> = {
        ...payer,
        ...(credits > 0 && token ? { "tollbooth-token": token } : { "tollbooth-solution": await solved(payer) }),
      };
      const s = await send("pow", tOf(performance.now()), cheap(), headers);
      seen.push(s);
      token = s.headers.get("tollbooth-token") ?? token;
      credits = Number(s.headers.get("tollbooth-credits") ?? 0);
    }
  })();
  const probe = every(1000, start, t0 + FLOOD_S * 1000, async () => {
    seen.push(await send("probe", tOf(performance.now()), cheap(), { "cf-connecting-ip": "203.0.113.30" }));
  });
  // The flood: each network a ping and a call every 6 s, within its free budget (10 + 0.5/s).
  const flood = Promise.all(
    Array.from({ length: NETWORKS }, (_, n) =>
      every(FLOOD_PERIOD_MS, t0 + (n / NETWORKS) * FLOOD_PERIOD_MS, t0 + FLOOD_S * 1000, async (i) => {
        const sentAt = performance.now();
        floodFirst = Math.min(floodFirst, sentAt);
        const s = await send("flood", tOf(sentAt), i % 2 === 0 ? ping() : cheap(), { "cf-connecting-ip": `198.18.${n >> 8}.${n & 255}` });
        floodLast = Math.max(floodLast, performance.now());
        seen.push(s);
      }),
    ),
  );
  const late = every(500, t0 + (FLOOD_S + 4) * 1000, end, async () => {
    seen.push(await send("late", tOf(performance.now()), cheap(), { "cf-connecting-ip": "203.0.113.31" }));
  });
  await Promise.all([pro, pow, probe, flood, late]);

  // What the origin ran, second by second, and what the clients were told.
  const log = origin.requests().map((r) => ({ t: tOf(r.at), n: messagesIn(r.body) }));
  const rows: string[] = [];
  for (let s = -BEFORE_S; s < FLOOD_S + AFTER_S; s++) {
    const inSecond = seen.filter((x) => x.t >= s && x.t < s + 1);
    const f = inSecond.filter((x) => x.who === "flood");
    const priced = inSecond.filter((x) => x.status === 402);
    const max = (get: (x: Seen) => number | undefined) => {
      const v = priced.map(get).filter((x): x is number => x !== undefined);
      return v.length ? String(Math.max(...v)) : "—";
    };
    const c = priced.map((x) => x.congestion).filter((x) => x !== undefined);
    rows.push(
      `| ${s} | ${log.filter((x) => x.t >= s && x.t < s + 1).reduce((a, x) => a + x.n, 0)} | ${f.length} | ${f.filter((x) => x.status === 200).length} | ` +
        `${f.filter((x) => x.reason === "origin").length} | ${f.filter((x) => x.reason === "over_budget").length} | ` +
        `${c.length ? Math.max(...c.map((x) => x.level)).toFixed(2) : "—"} | ${c.length ? Math.min(...c.map((x) => x.freeShare)).toFixed(2) : "1.00"} | ` +
        `${max((x) => x.difficulty)} | ${max((x) => x.sats)} | ` +
        `${c.length ? Math.max(...c.map((x) => x.priceFactor)).toFixed(3) : "1.000"} |`,
    );
  }
  const T = (floodLast - floodFirst) / 1000;
  const received = log.filter((x) => x.t >= tOf(floodFirst) && x.t <= tOf(floodLast)).reduce((a, x) => a + x.n, 0);
  const bound = C + R * T;
  const by = (who: Seen["who"]) => seen.filter((x) => x.who === who);
  const statuses = (who: Seen["who"]) =>
    JSON.stringify(
      Object.fromEntries([...new Set(by(who).map((x) => x.status))].map((st) => [st, by(who).filter((x) => x.status === st).length])),
    );
  console.log(
    [
      `origin ceiling C = ${C}, R = ${R}/s; flood of ${NETWORKS} networks for ${T.toFixed(1)} s: the origin received ${received} messages, C + R·T = ${bound.toFixed(0)} (${((received / bound - 1) * 100).toFixed(1)} %), R·T = ${(R * T).toFixed(0)}`,
      `answers by caller: pro ${statuses("pro")}, pow ${statuses("pow")}, probe ${statuses("probe")}, late ${statuses("late")}, flood ${statuses("flood")}`,
      "| s (0: flood begins) | origin messages | flood sent | flood 200 | flood 402 origin | flood 402 budget | level | free share | pow bits | L402 sats | price × |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );

  // No refusal for the callers in their budgets: the pro caller (verified) and the payer (worked).
  expect(by("pro").length).toBeGreaterThan(30);
  expect(by("pro").filter((x) => x.status !== 200)).toEqual([]);
  expect(by("pow").length).toBeGreaterThan(12);
  expect(by("pow").filter((x) => x.status !== 200)).toEqual([]);
  // The origin within its ceiling over the flood, and kept at it.
  expect(received).toBeLessThanOrEqual(bound * 1.05);
  expect(received).toBeGreaterThanOrEqual(R * T * 0.9);
  // The flood is priced, never refused outright: 402s (at the origin, and by free budgets shrunk by the free share).
  const flood402 = by("flood").filter((x) => x.status === 402);
  expect(by("flood").every((x) => x.status === 200 || x.status === 402)).toBe(true);
  expect(flood402.filter((x) => x.reason === "origin").length).toBeGreaterThan(((NETWORKS * FLOOD_S * 1000) / FLOOD_PERIOD_MS) * 0.3);
  const top = flood402.filter((x) => x.congestion && x.congestion.level >= 0.9);
  expect(top.length).toBeGreaterThan(0);
  expect(Math.max(...top.map((x) => x.difficulty!))).toBeGreaterThanOrEqual(BASE_BITS + 3);
  expect(Math.max(...top.map((x) => x.sats ?? 0))).toBeGreaterThanOrEqual(LIST_SATS * 3);
  expect(
    flood402.some((x) => x.reason === "over_budget" && /free requests may use \d+ % of their budget/.test(x.congestion?.why ?? "")),
  ).toBe(true);
  // After the flood the price is back: in the last 4 s every 402 carries no congestion, at the
  // list difficulty; the late probe's (a network with fresh invoices) at the list L402 price.
  const last = (who: Seen["who"]) => by(who).filter((x) => x.status === 402 && x.t >= FLOOD_S + AFTER_S - 4);
  for (const x of [...last("probe"), ...last("late")]) expect([x.congestion, x.difficulty]).toEqual([undefined, BASE_BITS]);
  // Enough samples to read a price from (2 a second over 4 s: 8 on a quiet machine, 5 seen under load).
  expect(last("late").length).toBeGreaterThanOrEqual(3);
  for (const x of last("late")) expect(x.sats).toBe(LIST_SATS);
}, 120_000);
