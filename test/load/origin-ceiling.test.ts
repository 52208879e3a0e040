/**
 * `npm run test:load`, second run: the origin ceiling holds under many verified callers.
 *
 * 200 callers, each with its own issued API key (listed in the policy as SHA-256 hashes,
 * so each is a verified identity with its own budget), each well within its own budget,
 * together offer about 4 × what the origin ceiling (`originCeiling`: a token bucket over
 * every forwarded request, all callers together) lets through, for RUN_SECONDS. Asserted:
 * - every request is answered: 200 or 429 (layer "origin"), no 5xx, no connection error;
 * - the origin received no more than the ceiling allows over the run (capacity + refill ×
 *   the run's length, +5 %), and no less than 95 % of it (the ceiling, not something
 *   else, is what limited the traffic);
 * - what the origin ran equals the 200s the callers got (nothing refused reached it).
 * The load is open loop (request i of a caller is sent at its start + i / RATE whatever
 * the answers), so what is offered does not depend on the machine's speed.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type McpSession, openSession } from "../../bench/mcp-http.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const CALLERS = 200;
/** Requests per second each caller offers (open loop): 200 × 0.3 = 60/s offered in all. */
const RATE = 0.3;
const RUN_SECONDS = 20;
/** The origin ceiling: 15 requests/s for everyone together, a burst of 30. */
const ORIGIN_CEILING = { capacity: 30, refillPerSecond: 15 };
const TOLERANCE = 0.05;

const keys = Array.from({ length: CALLERS }, () => `tb_${randomBytes(18).toString("base64url")}`);
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

let origin: Origin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  gateway = await startGateway({
    originUrl: origin.url,
    policy: {
      identity: { strategies: ["api-key", "ip"], apiKeys: keys.map((k, i) => ({ sha256: sha256(k), name: `caller-${i}`, plan: "pro" })) },
      plans: { pro: { bucket: { capacity: 1000, refillPerSecond: 100 }, ceiling: { capacity: 1000, refillPerSecond: 100 } } },
      originCeiling: ORIGIN_CEILING,
    },
  });
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

test("200 verified callers in budget, together over the origin ceiling: the origin gets the ceiling (±5 %), every request is answered", async () => {
  // Handshakes first (they pass the origin ceiling too), spread out so the ceiling admits them all.
  const sessions: McpSession[] = [];
  for (let i = 0; i < CALLERS; i += 10) {
    const batch = await Promise.all(keys.slice(i, i + 10).map((k) => openWithRetry(`${gateway.url}/mcp`, k)));
    sessions.push(...batch);
  }
  // Let the ceiling fill up again, then count from zero.
  await new Promise((r) => setTimeout(r, (ORIGIN_CEILING.capacity / ORIGIN_CEILING.refillPerSecond) * 1000 + 500));
  origin.reset();

  const statuses = new Map<number, number>();
  const layers = new Map<string, number>();
  let errors = 0;
  const startMs = performance.now() + 200;
  let firstSent = Infinity;
  let lastAnswered = 0;
  const perCaller = Math.floor(RUN_SECONDS * RATE);
  await Promise.all(
    sessions.map(async (s, c) => {
      const offset = (c / CALLERS) * (1000 / RATE);
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < perCaller; i++) {
        const at = startMs + offset + (i * 1000) / RATE;
        await new Promise((r) => setTimeout(r, Math.max(0, at - performance.now())));
        firstSent = Math.min(firstSent, performance.now());
        inFlight.push(
          s.request("tools/call", { name: "echo", arguments: { message: `c${c}-${i}` } }, 30_000).then(
            (r) => {
              lastAnswered = Math.max(lastAnswered, performance.now());
              statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
              if (r.status === 429) {
                const layer = (JSON.parse(r.text) as { error: { data: { layer: string } } }).error.data.layer;
                layers.set(layer, (layers.get(layer) ?? 0) + 1);
              }
            },
            (err: unknown) => {
              if (errors++ === 0) console.error("first error:", err, (err as Error).cause);
            },
          ),
        );
      }
      await Promise.all(inFlight);
    }),
  );

  const ok = statuses.get(200) ?? 0;
  const refused = statuses.get(429) ?? 0;
  const runSeconds = (lastAnswered - firstSent) / 1000;
  const allowed = ORIGIN_CEILING.capacity + ORIGIN_CEILING.refillPerSecond * runSeconds;
  const received = origin.counts()["tools/call:echo"] ?? 0;
  console.log(
    `origin ceiling: ${CALLERS} callers offered ${CALLERS * perCaller} requests over ${runSeconds.toFixed(1)} s; ` +
      `200: ${ok}, 429: ${refused} (${[...layers].map(([l, n]) => `${l} ${n}`).join(", ")}), errors ${errors}; ` +
      `origin received ${received}, ceiling allows ${allowed.toFixed(0)} (${((received / allowed - 1) * 100).toFixed(2)} %)`,
  );
  expect(errors).toBe(0);
  expect(
    [...statuses.keys()].every((s) => s === 200 || s === 429),
    JSON.stringify([...statuses]),
  ).toBe(true);
  expect(ok + refused).toBe(CALLERS * perCaller);
  expect([...layers.keys()]).toEqual(["origin"]);
  // What the callers were told went through is exactly what the origin ran.
  expect(received).toBe(ok);
  expect(received).toBeLessThanOrEqual(allowed * (1 + TOLERANCE));
  expect(received).toBeGreaterThanOrEqual(allowed * (1 - TOLERANCE));
}, 110_000);

/** Open a session, waiting out the origin ceiling's 429 (integer Retry-After) if the handshake meets it. */
async function openWithRetry(url: string, key: string): Promise<McpSession> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await openSession(url, { "x-api-key": key });
    } catch (err) {
      if (attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}
