/**
 * Identities nobody can mint for free: through `wrangler dev` with the default identity
 * strategies (jwt, api-key, ip), in front of a real origin on the official SDK's Express
 * app that counts every tool run (test/helpers/express-origin.ts):
 * - 500 requests with invented API keys and 500 with invented bearer tokens, all from one
 *   address, run at most that network's free allowance (the bucket's capacity, plus what
 *   it refills while they are sent);
 * - the same from 50 addresses get 50 allowances, no more.
 * `CF-Connecting-IP` is what Cloudflare's edge sets; `wrangler dev` passes the client's, so
 * the test can speak for 50 addresses.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type ExpressOrigin, startExpressOrigin } from "../helpers/express-origin.ts";

const CAPACITY = 5;
/** One unit per 1000 s: a run of a minute refills nothing whole. */
const REFILL = 0.001;

let origin: ExpressOrigin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startExpressOrigin();
  gateway = await startGateway({
    originUrl: origin.url,
    // The default identity strategies, written out (the test stack would otherwise opt into unverified keys).
    policy: {
      bucket: { capacity: CAPACITY, refillPerSecond: REFILL },
      identity: { strategies: ["jwt", "api-key", "ip"] },
      costs: { tools: { cheap: 1 } },
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

const invented = () => randomBytes(12).toString("base64url");

/** A `tools/call` of `cheap` with the given headers. @returns the HTTP status */
async function call(headers: Record<string, string>, id: number): Promise<number> {
  const res = await fetch(`${gateway.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "cheap", arguments: {} } }),
  });
  await res.body?.cancel();
  return res.status;
}

/** Send `n` requests, `concurrency` at a time, each with headers from `headersOf(i)`. @returns statuses */
async function flood(n: number, concurrency: number, headersOf: (i: number) => Record<string, string>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i += concurrency) {
    statuses.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, n - i) }, (_, k) => call(headersOf(i + k), i + k)))));
  }
  return statuses;
}

describe("invented credentials do not make new callers", () => {
  it("500 invented API keys and 500 invented bearer tokens from one address run at most one network allowance", async () => {
    origin.reset();
    const ip = "198.51.100.7";
    const keys = await flood(500, 25, () => ({ "cf-connecting-ip": ip, "x-api-key": invented() }));
    const tokens = await flood(500, 25, () => ({
      "cf-connecting-ip": ip,
      authorization: `Bearer ${invented()}.${invented()}.${invented()}`,
    }));
    const ok = [...keys, ...tokens].filter((s) => s === 200).length;
    // Over budget: 402; past the network's own ceiling (60 requests + 10/s): 429.
    expect([...keys, ...tokens].every((s) => s === 200 || s === 402 || s === 429)).toBe(true);
    // The network's one free bucket: its capacity (a minute refills no whole unit at this rate).
    expect(ok).toBe(CAPACITY);
    expect(origin.runs().cheap).toBe(CAPACITY);
  });

  it("the same from 50 addresses: 50 allowances, each exactly one bucket", async () => {
    origin.reset();
    const ips = Array.from({ length: 50 }, (_, i) => `203.0.113.${i + 1}`);
    const statuses = await flood(1000, 25, (i) => ({
      "cf-connecting-ip": ips[i % 50]!,
      ...(i % 2 ? { "x-api-key": invented() } : { authorization: `Bearer ${invented()}` }),
    }));
    const ok = statuses.filter((s) => s === 200).length;
    expect(ok).toBe(50 * CAPACITY);
    expect(origin.runs().cheap).toBe(50 * CAPACITY);
  });
});
