/**
 * The live dashboard end to end: `wrangler dev` (the Worker with its static assets) in front
 * of server-everything, a scripted burst from one caller with a small bucket (known numbers
 * of 200s, 402s and solves, challenges solved with the repository's solver), then Debian's
 * chromium (playwright-core) opens `<gateway>/admin`, enters the token, and the page must draw
 * the uPlot chart with a series per decision and show the burst's counts — read from the
 * page, polled until the isolate's metrics flush arrives (no fixed sleep).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { launchChromium } from "../helpers/browser.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const TOKEN = randomBytes(24).toString("hex");
/** 10 free calls (no refill to speak of), then 402 with an 8-bit challenge. */
const POLICY = {
  bucket: { capacity: 10, refillPerSecond: 0.0001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 5 },
};
const CALLS = 30;
const SOLVES = 3;
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const API_KEY = `dash-${randomBytes(6).toString("hex")}`;
/** The caller as the metrics name it: `key:` + 12 hex of SHA-256(key) + `…` (docs/identity.md, types.ts). */
const SHORT_CALLER = `key:${createHash("sha256").update(API_KEY).digest("hex").slice(0, 12)}…`;
const DECISIONS = [
  "admitted",
  "admitted_unmetered",
  "payment_required",
  "rate_limited",
  "bad_request",
  "unavailable",
  "blocked",
  "own_endpoint",
];

let origin: Origin;
let gw: Gateway;
let browser: Browser;
/** What the burst got: statuses of every request it sent to the MCP endpoint. */
const statuses: number[] = [];
let rpcId = 0;

async function send(headers: Record<string, string>, message: object): Promise<Response> {
  const res = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...MCP_HEADERS, "x-api-key": API_KEY, ...headers },
    body: JSON.stringify(message),
  });
  await res.text();
  statuses.push(res.status);
  return res;
}

beforeAll(async () => {
  origin = await startOrigin();
  gw = await startGateway({
    originUrl: origin.url,
    policy: POLICY,
    vars: { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_METRICS_FLUSH_MS: "500" },
  });
  browser = await launchChromium();

  // The burst: a session (initialize + notifications/initialized, free), 30 calls (10 paid by
  // the bucket, 20 refused with 402), then 3 of those challenges solved and redeemed with a call each.
  const init = await send(
    {},
    {
      jsonrpc: "2.0",
      id: ++rpcId,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "dashboard-test", version: "0" } },
    },
  );
  const session = { "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-11-25" };
  await send(session, { jsonrpc: "2.0", method: "notifications/initialized" });
  const challenges: string[] = [];
  for (let i = 0; i < CALLS; i++) {
    const res = await send(session, {
      jsonrpc: "2.0",
      id: ++rpcId,
      method: "tools/call",
      params: { name: "echo", arguments: { message: `m${i}` } },
    });
    if (res.status === 402) challenges.push(res.headers.get("www-authenticate")!);
  }
  for (const header of challenges.slice(-SOLVES)) {
    const params = header.slice("PowChallenge ".length);
    const salt = /salt="([0-9a-f]+)"/.exec(params)![1]!;
    const difficulty = Number(/difficulty=(\d+)/.exec(params)![1]);
    const { nonce } = await solvePow(salt, difficulty);
    const res = await send(
      { ...session, "tollbooth-solution": `${params}, nonce="${nonce}"` },
      { jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "paid" } } },
    );
    expect(res.status).toBe(200);
  }
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await origin?.close();
});

describe("the dashboard", () => {
  it("the burst got what its bucket allows", () => {
    // initialize 200, notification 202, 10 × 200, 20 × 402, 3 solved × 200.
    expect(statuses.filter((s) => s === 402)).toHaveLength(CALLS - POLICY.bucket.capacity);
    expect(statuses.filter((s) => s === 200 || s === 202)).toHaveLength(2 + POLICY.bucket.capacity + SOLVES);
    expect(origin.counts()["tools/call"]).toBe(POLICY.bucket.capacity + SOLVES);
  });

  it("draws the chart and shows the burst's counts after the token is entered", async () => {
    const admitted = statuses.filter((s) => s === 200 || s === 202).length;
    const refused = statuses.filter((s) => s === 402).length;
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (m) => void (m.type() === "error" && problems.push(m.text())));
    page.on("pageerror", (e) => void problems.push(String(e)));
    page.on("response", (r) => void (r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`)));
    try {
      const res = await page.goto(`${gw.url}/admin`);
      expect(res!.status()).toBe(200);
      expect(res!.headers()["content-security-policy"]).toMatch(/script-src 'self'/);
      // No data before the token: the board is hidden, the numbers blank.
      expect(await page.isVisible("#board")).toBe(false);

      await page.fill("#token", TOKEN);
      await page.click("#login button[type=submit]");
      // The metrics arrive after the isolate's flush: poll the page until they are there.
      await page.waitForFunction(
        ([a, p, s]) =>
          document.querySelector("#n-admitted")?.textContent === a &&
          document.querySelector("#n-payment-required")?.textContent === p &&
          document.querySelector("#n-solves")?.textContent === s,
        [String(admitted), String(refused), String(SOLVES)],
        { timeout: 30_000, polling: 250 },
      );
      expect(await page.textContent("#n-admitted")).toBe(String(admitted));
      expect(await page.textContent("#n-payment-required")).toBe(String(refused));
      expect(await page.textContent("#n-solves")).toBe(String(SOLVES));

      // The chart: uPlot's canvas, a legend entry per decision.
      expect(await page.locator("#chart .uplot canvas").count()).toBeGreaterThan(0);
      const labels = await page.locator("#chart .u-legend .u-series .u-label").allTextContents();
      expect(labels).toEqual(expect.arrayContaining(DECISIONS));
      // The top caller is the burst's: every request it sent.
      const top = page.locator("#top-callers tbody tr").first();
      expect(await top.getAttribute("data-caller")).toBe(SHORT_CALLER);
      expect(await top.locator("td").nth(1).textContent()).toBe(String(statuses.length));
      expect(await top.locator("td").nth(2).textContent()).toBe(String(admitted));
      expect(await top.locator("td").nth(3).textContent()).toBe(String(refused));
      // Latency percentiles and the policy are shown.
      // Latency as the histogram's bucket bounds (a quantile past the last bound reads "> 10000 ms").
      expect(await page.textContent("#n-latency")).toMatch(/^p50 ≤ \d+ ms · p90 ≤ \d+ ms · p99 (≤|>) \d+ ms$/);
      await page.waitForFunction(() => (document.querySelector("#policy")?.textContent ?? "").includes('"endpoint"'));
      expect(JSON.parse((await page.textContent("#policy"))!).bucket).toEqual(POLICY.bucket);

      // The token lives in this tab's sessionStorage, never in the URL.
      expect(page.url()).toBe(`${gw.url}/admin`);
      expect(await page.evaluate(() => sessionStorage.getItem("tollbooth-admin-token"))).toBe(TOKEN);
      // No script error and no CSP violation.
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("a wrong token is refused and the page asks again", async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${gw.url}/admin`);
      await page.fill("#token", `${TOKEN}x`);
      await page.click("#login button[type=submit]");
      await page.waitForFunction(() => document.querySelector("#login-error")?.textContent === "The token was refused.", null, {
        timeout: 10_000,
      });
      expect(await page.isVisible("#login")).toBe(true);
      expect(await page.textContent("#n-admitted")).toBe("–");
      expect(await page.evaluate(() => sessionStorage.getItem("tollbooth-admin-token"))).toBeNull();
    } finally {
      await page.close();
    }
  });
});
