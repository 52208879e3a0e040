/**
 * The dashboard's money, chart, latency and caller pages end to end: `wrangler dev` in front
 * of server-everything with proof of work, L402 (the Lightning stand-in, real regtest
 * invoices) and x402 (anvil + the real facilitator, settled on chain). Agents pay through
 * `withTollbooth` (L402 and x402), a third caller solves challenges; then Debian's chromium
 * (playwright-core) opens `<gateway>/admin` and must show exactly what was paid — the
 * stand-in's settled sats, the payee's on-chain USDC gain at 6 decimals — the solves and the
 * difficulty, a chart zoomed to the minutes with data, latency as bucket bounds; a caller's
 * row opens its page (plan, buckets, recent decisions), whose block and unblock buttons the
 * gateway obeys. `/admin/metrics`' histogram `_sum` equals the logged latencies.
 *
 * `DASHBOARD_SCREENSHOT=docs/dashboard.png npx vitest run --project unit test/e2e/dashboard-money.test.ts`
 * also saves the board's screenshot there (docs/admin.md shows it).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Browser, Page } from "playwright-core";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FetchLike, withTollbooth, type X402PayEvent } from "../../packages/tollbooth-client/src/index.ts";
import { lndWallet } from "../../packages/tollbooth-client/src/payers/lightning-wallet.ts";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { launchChromium } from "../helpers/browser.ts";
import { type Chain, startChain } from "../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../helpers/facilitator.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";
import { connect, firstText } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const TOKEN = randomBytes(24).toString("hex");
const L402_PRICE = { sats: 21, credits: 2 };
const X402_PRICE = { amount: "20000", credits: 2 };
const DIFFICULTY = 8;
/** Calls each paying agent makes: 1 on the free unit, 4 on two paid bundles of 2. */
const PAID_CALLS = 5;
const SOLVES = 3;
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const L402_KEY = `dash-l402-${randomBytes(6).toString("hex")}`;
const X402_KEY = `dash-x402-${randomBytes(6).toString("hex")}`;
/** The L402 agent as the metrics name it (`key:` + 12 hex of SHA-256 + `…`) and in full (32 hex: docs/identity.md). */
const L402_HASH = createHash("sha256").update(L402_KEY).digest("hex");
/** The caller that solves challenges: no key, so its network (every test caller comes from 127.0.0.1). */
const SOLVER = "ip:127.0.0.1";

let origin: Origin;
let ln: LightningStandin;
let chain: Chain;
let facilitator: Facilitator;
let gw: Gateway;
let browser: Browser;
let payeeGain = 0n;
const x402Paid: X402PayEvent[] = [];
let rpcId = 0;

async function post(headers: Record<string, string>, message: object): Promise<Response> {
  const res = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...session, ...headers },
    body: JSON.stringify(message),
  });
  await res.text();
  return res;
}
const echo = () => ({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });

/** An agent paying with `fetch` (withTollbooth) makes PAID_CALLS echo calls. */
async function agent(apiKey: string, fetchImpl: FetchLike): Promise<void> {
  const c = await connect(`${gw.url}/mcp`, { apiKey, fetch: fetchImpl });
  try {
    for (let i = 1; i <= PAID_CALLS; i++)
      expect(firstText(await c.client.callTool({ name: "echo", arguments: { message: `m${i}` } }))).toBe(`Echo: m${i}`);
  } finally {
    await c.close(true);
  }
}

/** The keyless caller's MCP session (its `initialize` and `notifications/initialized` are free). */
let session: Record<string, string> = {};

/** The keyless caller: a session, its free unit, then SOLVES challenges solved and redeemed (each 402 answered with its solution). */
async function solver(): Promise<void> {
  const init = await post(
    {},
    {
      jsonrpc: "2.0",
      id: ++rpcId,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "dashboard-money", version: "0" } },
    },
  );
  expect(init.status).toBe(200);
  session = { "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-11-25" };
  expect((await post({}, { jsonrpc: "2.0", method: "notifications/initialized" })).status).toBe(202);
  expect((await post({}, echo())).status).toBe(200);
  for (let i = 0; i < SOLVES; i++) {
    const refused = await post({}, echo());
    expect(refused.status).toBe(402);
    const header = refused.headers.get("www-authenticate")!;
    const params = /PowChallenge ([\s\S]*?)(?:, L402 |, x402|$)/.exec(header)![1]!.replace(/,\s*$/, "");
    const salt = /salt="([0-9a-f]+)"/.exec(params)![1]!;
    const { nonce } = await solvePow(salt, Number(/difficulty=(\d+)/.exec(params)![1]));
    expect((await post({ "tollbooth-solution": `${params}, nonce="${nonce}"` }, echo())).status).toBe(200);
  }
}

beforeAll(async () => {
  [origin, ln, chain] = await Promise.all([startOrigin(), startLightningStandin(), startChain()]);
  facilitator = await startFacilitator(chain);
  gw = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 1, refillPerSecond: 0.0001 },
      challenge: { difficulty: DIFFICULTY, credits: 1 },
      l402: L402_PRICE,
      lightning: { backend: "lnd", url: ln.url, timeoutMs: 2_000 },
      x402: { mode: "credits", ...X402_PRICE },
      facilitator: {
        url: facilitator.url,
        payTo: chain.accounts.payTo.address,
        assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
        timeoutMs: 5_000,
      },
    },
    // Every decision logged (admitted ones are sampled 1 in 100 by default): the _sum test adds up the log's latencies.
    vars: {
      TOLLBOOTH_ADMIN_TOKEN: TOKEN,
      TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex,
      TOLLBOOTH_METRICS_FLUSH_MS: "200",
      TOLLBOOTH_DECISION_LOG_SAMPLE: "1",
    },
  });
  browser = await launchChromium();

  const payee = chain.accounts.payTo.address;
  const before = await chain.balanceOf(payee);
  const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex });
  await agent(L402_KEY, withTollbooth(undefined, { pay: ["l402"], lightning: { wallet, maxSatsPerRequest: 100, maxSatsPerHour: 1000 } }));
  const payer = chain.accounts.payers[0]!;
  await agent(
    X402_KEY,
    withTollbooth(undefined, {
      pay: ["x402"],
      x402: {
        signer: privateKeyToAccount(payer.privateKey),
        networks: [chain.network],
        assets: [chain.usdc],
        maxPerRequest: X402_PRICE.amount,
        maxPerHour: "1000000",
        onPay: (e) => x402Paid.push(e),
      },
    }),
  );
  payeeGain = (await chain.balanceOf(payee)) - before;
  await solver();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await facilitator?.close();
  await Promise.all([origin?.close(), ln?.close(), chain?.close()]);
});

/** A page logged in to the dashboard, with every script error, CSP violation and failed request collected. */
async function board(): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on("console", (m) => void (m.type() === "error" && problems.push(m.text())));
  page.on("pageerror", (e) => void problems.push(String(e)));
  page.on("response", (r) => void (r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`)));
  await page.goto(`${gw.url}/admin`);
  await page.fill("#token", TOKEN);
  await page.click("#login button[type=submit]");
  return { page, problems };
}

/** `GET /admin/<path>` with the token. */
async function admin(path: string): Promise<any> {
  const res = await fetch(`${gw.url}/admin/${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return path === "metrics" ? res.text() : res.json();
}

const settledSats = () => ln.invoices().filter((i) => i.state === "SETTLED");

describe("what was paid", () => {
  it("the agents paid two bundles each: on the stand-in and on chain", () => {
    expect(settledSats().map((i) => i.sats)).toEqual([L402_PRICE.sats, L402_PRICE.sats]);
    expect(x402Paid).toHaveLength(2);
    expect(payeeGain).toBe(2n * BigInt(X402_PRICE.amount));
  });
});

describe("the dashboard", () => {
  it("shows exactly the sats and USDC received (last hour and last day), the solves and the difficulty", async () => {
    const sats = settledSats().reduce((a, i) => a + i.sats, 0);
    // The payee's on-chain gain, in USDC (6 decimals): 40000 atomic units → 0.04.
    const usdc = (Number(payeeGain) / 1e6).toString();
    const { page, problems } = await board();
    try {
      await page.waitForFunction(
        ([s, u, n]) =>
          document.querySelector("#money-l402-hour .n")?.textContent === s &&
          document.querySelector("#money-x402-hour .n")?.textContent === u &&
          document.querySelector("#n-solves-hour")?.textContent === n &&
          (document.querySelector("#n-difficulty-note")?.textContent ?? "").includes("base"),
        [`${sats} sats`, `${usdc} USDC`, String(SOLVES)],
        { timeout: 30_000, polling: 250 },
      );
      for (const w of ["hour", "day"]) {
        expect(await page.textContent(`#money-l402-${w} .n`)).toBe(`${sats} sats`);
        expect(await page.textContent(`#money-l402-${w} .note`)).toBe("2 payments");
        expect(await page.textContent(`#money-x402-${w} .n`)).toBe(`${usdc} USDC`);
        expect(await page.textContent(`#money-x402-${w} .note`)).toBe("2 payments");
        expect(await page.textContent(`#money-l402-${w} .label`)).toBe(`L402 · last ${w}`);
      }
      expect(usdc).toBe("0.04");
      expect(await page.textContent("#n-solves-day")).toBe(String(SOLVES));
      expect(await page.textContent("#n-difficulty")).toBe(`${DIFFICULTY} bits`);
      expect(await page.textContent("#n-difficulty-note")).toContain(`base ${DIFFICULTY} bits`);

      // Latency as histogram bounds, each one of the histogram's bounds.
      const stats = await admin("stats");
      const latency = (await page.textContent("#n-latency"))!;
      const m = /^p50 ≤ (\d+) ms · p90 ≤ (\d+) ms · p99 (?:≤|>) (\d+) ms$/.exec(latency);
      expect(m, latency).not.toBeNull();
      for (const bound of m!.slice(1)) expect(stats.latencyBoundsMs).toContain(Number(bound));

      // The chart is zoomed: the window starts at most a minute before the first minute with data (5 minutes at least),
      // and its y axis ends at the busiest minute's count of one decision.
      const minutes = stats.minutes as Array<{ startMs: number; counters: Record<string, number> }>;
      const busy = minutes.filter((x) => Object.keys(x.counters).some((k) => k.startsWith("requests_total{")));
      const from = Number(await page.getAttribute("#chart", "data-from"));
      const to = Number(await page.getAttribute("#chart", "data-to"));
      expect(from).toBeLessThanOrEqual(busy[0]!.startMs / 1000);
      expect(to).toBeGreaterThanOrEqual(busy.at(-1)!.startMs / 1000);
      expect(to - from).toBe(4 * 60);
      expect(await page.textContent("#chart-window")).toBe("last 5 minutes");
      const ymax = Math.max(
        ...minutes.flatMap((x) =>
          Object.entries(x.counters)
            .filter(([k]) => k.startsWith("requests_total{"))
            .map(([, n]) => n),
        ),
      );
      expect(Number(await page.getAttribute("#chart", "data-ymax"))).toBe(ymax);
      expect(await page.locator("#chart .uplot canvas").count()).toBeGreaterThan(0);

      if (process.env.DASHBOARD_SCREENSHOT) await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("a caller's row opens its page: plan, buckets, recent decisions; block and unblock act on the gateway", async () => {
    const { page, problems } = await board();
    try {
      const row = page.locator(`#top-callers tbody tr[data-caller="${SOLVER}"]`);
      await row.waitFor({ timeout: 30_000 });
      await row.click();
      await page.waitForFunction(() => !document.querySelector("#caller-state")?.hasAttribute("hidden"), null, { timeout: 10_000 });
      expect(page.url()).toBe(`${gw.url}/admin#caller/${encodeURIComponent(SOLVER)}`);
      expect(await page.isVisible("#board")).toBe(false);
      expect(await page.textContent("#caller-id")).toBe(SOLVER);
      expect(await page.textContent("#caller-plan")).toBe("free (unverified)");
      expect(await page.textContent("#caller-bucket")).toMatch(/^0 of 1 left · full at /);
      expect(await page.textContent("#caller-blocked")).toBe("no");
      // Its recent decisions, newest first: each solved call after the 402 it answered (then its free call).
      const decisions = await page.locator("#caller-recent tbody tr td:nth-child(3)").allTextContents();
      const whys = await page.locator("#caller-recent tbody tr td:nth-child(4)").allTextContents();
      expect(decisions.slice(0, 2 * SOLVES)).toEqual([
        "admitted",
        "payment_required",
        "admitted",
        "payment_required",
        "admitted",
        "payment_required",
      ]);
      expect(whys.slice(0, 2)).toEqual(["solution, pow, 0 credits left", `over_budget, ${DIFFICULTY} bits`]);

      // Block from the page: the gateway refuses the caller 403 and the origin gets nothing; unblock: its 402 again.
      await page.fill("#caller-block-seconds", "600");
      await page.click("#caller-block");
      await page.waitForFunction(() => (document.querySelector("#caller-blocked")?.textContent ?? "").startsWith("until "));
      const forwarded = origin.requests().length;
      expect((await post({}, echo())).status).toBe(403);
      expect(origin.requests().length).toBe(forwarded);
      await page.click("#caller-unblock");
      await page.waitForFunction(() => document.querySelector("#caller-blocked")?.textContent === "no");
      expect(await page.textContent("#caller-action")).toBe("unblocked");
      expect((await post({}, echo())).status).toBe(402);

      // Back to the board, then a caller the metrics name by a hash prefix: its decisions, and its state from the full id.
      await page.click("#caller-back");
      await page.waitForFunction(() => !document.querySelector("#board")?.hasAttribute("hidden"));
      await page.locator(`#top-callers tbody tr[data-caller="key:${L402_HASH.slice(0, 12)}…"]`).click();
      await page.waitForFunction(() => !document.querySelector("#caller-full")?.hasAttribute("hidden"));
      expect(await page.isVisible("#caller-state")).toBe(false);
      const l402Whys = await page.locator("#caller-recent tbody tr td:nth-child(4)").allTextContents();
      expect(l402Whys.filter((w) => w.includes(`${L402_PRICE.sats} sats paid`))).toHaveLength(2);
      await page.fill("#caller-full-id", `key:${L402_HASH.slice(0, 32)}`);
      await page.click("#caller-full button[type=submit]");
      await page.waitForFunction(() => !document.querySelector("#caller-state")?.hasAttribute("hidden"), null, { timeout: 10_000 });
      expect(await page.textContent("#caller-plan")).toBe("free (unverified)");
      // Its last L402 token was spent to its last credit by the agent's fifth call.
      expect(await page.textContent("#caller-credits")).toMatch(/^0 on \d+ tokens?$/);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });
});

describe("Prometheus", () => {
  it("the latency histogram's _sum is the decision log's latencies added up, in seconds, and _count their number", async () => {
    // Wait for every logged decision to be flushed into the metrics.
    const logged = () =>
      gw
        .output()
        .split("\n")
        .filter((l) => l.includes('{"tollbooth":"decision",'))
        .map((l) => JSON.parse(l.slice(l.indexOf('{"tollbooth":"decision",'))) as { latencyMs: number });
    let text = "";
    for (let i = 0; i < 50; i++) {
      text = await admin("metrics");
      if (text.includes(`tollbooth_request_duration_seconds_count ${logged().length}\n`)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const records = logged();
    expect(text).toContain(`tollbooth_request_duration_seconds_count ${records.length}\n`);
    const sum = Number(/^tollbooth_request_duration_seconds_sum (\S+)$/m.exec(text)![1]);
    expect(Math.round(sum * 1000)).toBe(records.reduce((a, r) => a + r.latencyMs, 0));
  });
});
