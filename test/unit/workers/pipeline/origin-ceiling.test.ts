/**
 * The origin-ceiling step (workers/pipeline/origin-ceiling.ts, docs/allocation.md) with the
 * isolate's side of the ceiling replaced by a fake (what the shards decide is pinned in
 * test/workers/objects/origin-gate.test.ts and test/unit/shared/limits/): the class of a
 * request from what admits it, its units (every message), the answer when its class has no
 * room — 429 for paid, a 402 offering the ways up that have room for the others — and the
 * free share a free request pays at its free bucket under congestion.
 */
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { issueChallenge } from "../../../../shared/credentials/challenge.ts";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { newTokenId, signToken } from "../../../../shared/credentials/token.ts";
import { type Congestion, congestion, DEFAULT_CONGESTION } from "../../../../shared/limits/congestion.ts";
import type { AdmissionClass } from "../../../../shared/limits/origin-classes.ts";
import { formatChallenge } from "../../../../shared/wire/pow.ts";
import type { OriginShards, Receipt } from "../../../../workers/objects/origin-shards.ts";
import { body } from "../../../../workers/pipeline/body.ts";
import { credentials } from "../../../../workers/pipeline/credentials.ts";
import type { Deps } from "../../../../workers/pipeline/deps.ts";
import { identity } from "../../../../workers/pipeline/identity.ts";
import { originCeiling } from "../../../../workers/pipeline/origin-ceiling.ts";
import type { Carrying, Known, Metered, Read } from "../../../../workers/pipeline/state.ts";
import { OVERLOADED_RETRY_AFTER_S } from "../../../../workers/refusal/layers.ts";
import { Refusal } from "../../../../workers/refusal/refusal.ts";
import { arrival, depsFor, IP, request, SECRET, solve, toolCall } from "./support.ts";

const KEY = "tb_origin_step_key_0001";
const PAYER = `evm:0x${"cd".repeat(20)}`;
const POLICY = {
  bucket: { capacity: 10, refillPerSecond: 0.5 },
  challenge: { difficulty: 8, credits: 20 },
  identity: { apiKeys: [{ sha256: createHash("sha256").update(KEY).digest("hex"), name: "partner", plan: "pro" }] },
  originCeiling: { capacity: 100, refillPerSecond: 10 },
  x402: { mode: "credits", amount: "10000", credits: 5 },
  facilitator: {
    url: "https://facilitator.example",
    payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
    assets: [{ network: "eip155:84532", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", name: "USDC", version: "2" }],
  },
};

/** A fake of the isolate's origin ceiling: admits from `budget` per class (null: refuse), at load level `level`, with the shard's word on `room`. */
function fakeOrigin(
  o: {
    budget?: Partial<Record<AdmissionClass, number>>;
    level?: number;
    room?: Partial<Record<AdmissionClass, boolean>>;
    /** The shard call fails with this error. */
    fails?: Error;
  } = {},
) {
  const asked: Array<[AdmissionClass, number]> = [];
  const given: Receipt[] = [];
  const left = { paid: 1000, verified: 1000, worked: 1000, free: 1000, ...o.budget };
  const origin: OriginShards = {
    async admit(cls, units) {
      asked.push([cls, units]);
      if (o.fails) throw o.fails;
      if (left[cls] < units) return null;
      left[cls] -= units;
      return { cls: 0, parts: [] };
    },
    confirm: () => {},
    giveBack: (r) => void given.push(r),
    congestion: (): Congestion => congestion(o.level ?? 0, DEFAULT_CONGESTION),
    room: (cls) => o.room?.[cls] ?? null,
    retryAfterSeconds: (units) => Math.max(1, Math.ceil(units / 10)),
  };
  return { origin, asked, given };
}

let keyring: Keyring;
beforeAll(async () => {
  keyring = await importKeyring(SECRET);
});

/** The request after the credentials step, under deps whose origin ceiling is `origin`. */
async function carrying(req: Request, deps: Deps): Promise<Carrying> {
  const known = (await identity((await body(arrival(req), deps)) as Read, deps)) as Known;
  return (await credentials(known, deps)) as Carrying;
}

/** A namespace nothing may reach: the fake below stands for the shards. */
const NO_GATE = {
  idFromName: (): never => {
    throw new Error("the fake origin ceiling asked a Durable Object");
  },
} as never;

/** The deps of POLICY with a fake origin ceiling. */
function withOrigin(fake: ReturnType<typeof fakeOrigin>): Deps {
  return { ...depsFor(POLICY, { originGate: NO_GATE }), origin: fake.origin };
}

const token = (sub: string, pd?: 1) =>
  signToken(keyring, { sub, jti: newTokenId(), exp: Math.floor(Date.now() / 1000) + 300, cr: 20, ...(pd ? { pd } : {}) });

async function solutionFor(caller: string): Promise<string> {
  const ch = await issueChallenge(keyring, { realm: "tollbooth", difficulty: 8, credits: 20, ttlSeconds: 120, caller, nowMs: Date.now() });
  return `${formatChallenge(ch).replace(/^PowChallenge\s+/, "")}, nonce="${solve(ch.salt, ch.difficulty)}"`;
}

describe("the class of a request, and its units", () => {
  it("paid (a token money bought), verified (an issued key), worked (a solution, a token work bought), free (nothing, or a credential refused)", async () => {
    const fake = fakeOrigin();
    const deps = withOrigin(fake);
    const sends: Array<Record<string, string>> = [
      { "tollbooth-token": await token(`ip:${IP}`, 1) },
      { "x-api-key": KEY },
      { "tollbooth-solution": await solutionFor(`ip:${IP}`) },
      { "tollbooth-token": await token(`ip:${IP}`) },
      {},
      { "tollbooth-token": await token("ip:198.51.100.1", 1) },
    ];
    for (const headers of sends)
      expect(await originCeiling(await carrying(request("POST", "/mcp", { body: toolCall(1), headers }), deps), deps)).not.toBeInstanceOf(
        Refusal,
      );
    expect(fake.asked.map(([cls]) => cls)).toEqual(["paid", "verified", "worked", "worked", "free", "free"]);
  });

  it("a token a payer bought before tokens said what bought them (no `pd`) is still paid: it names its payer", async () => {
    const fake = fakeOrigin();
    const deps = withOrigin(fake);
    const s = await carrying(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-token": await token(PAYER) } }), deps);
    expect(s.caller).toBe(PAYER);
    expect(((await originCeiling(s, deps)) as Metered).cls).toBe("paid");
  });

  it("every JSON-RPC message is a unit, cost 0 included: a batch of four pings takes four", async () => {
    const fake = fakeOrigin();
    const deps = withOrigin(fake);
    const pings = Array.from({ length: 4 }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "ping" }));
    const s = await carrying(request("POST", "/mcp", { body: pings }), deps);
    expect(s.cost).toBe(0);
    await originCeiling(s, deps);
    expect(fake.asked).toEqual([["free", 4]]);
  });

  it("without an origin ceiling: the class, no units, nothing asked", async () => {
    const deps = depsFor({ ...POLICY, originCeiling: null });
    const m = (await originCeiling(
      await carrying(request("POST", "/mcp", { body: toolCall(1), headers: { "x-api-key": KEY } }), deps),
      deps,
    )) as Metered;
    expect([m.cls, m.origin]).toEqual(["verified", null]);
  });
});

describe("no room for the request's class", () => {
  it("paid: 429 from the origin layer, Retry-After for its units at the ceiling's refill, the congestion", async () => {
    const deps = withOrigin(fakeOrigin({ budget: { paid: 0 }, level: 1 }));
    const batch = Array.from({ length: 15 }, (_, i) => toolCall(i));
    const r = (await originCeiling(
      await carrying(request("POST", "/mcp", { body: batch, headers: { "tollbooth-token": await token(`ip:${IP}`, 1) } }), deps),
      deps,
    )) as Refusal;
    expect(r).toBeInstanceOf(Refusal);
    // 15 messages at 10 a second.
    expect([r.status, r.retryAfter]).toEqual([429, 2]);
    expect(r.data).toMatchObject({ reason: "origin", layer: "origin", congestion: { level: 1, extraBits: 4, priceFactor: 4 } });
    expect(r.message).toMatch(/paid traffic included/);
  });

  it("verified: 402 from the origin offering money only (x402, at the congestion's price), the congestion and why", async () => {
    const deps = withOrigin(fakeOrigin({ budget: { verified: 0 }, level: 0.9 }));
    const r = (await originCeiling(
      await carrying(request("POST", "/mcp", { body: toolCall(1), headers: { "x-api-key": KEY } }), deps),
      deps,
    )) as Refusal;
    expect(r.status).toBe(402);
    const challenges = r.data!.challenges as Array<{ type: string; accepts: Array<{ amount: string }> }>;
    expect(challenges.map((c) => c.type)).toEqual(["x402"]);
    // The x402 price at ℓ 0.9: 10000 × 4^0.8, rounded up.
    expect(challenges[0]!.accepts[0]!.amount).toBe("30315");
    expect(r.data).toMatchObject({
      reason: "origin",
      layer: "origin",
      congestion: {
        level: 0.9,
        extraBits: 3,
        why: expect.stringMatching(/^the origin is at 90 % of its ceiling: this request's class has no room now/),
      },
    });
  });

  it("free: 402 offering work and money; a way up whose class the shard said has no room is not offered; none left: 429", async () => {
    const free = async (room: Partial<Record<AdmissionClass, boolean>>) => {
      const deps = withOrigin(fakeOrigin({ budget: { free: 0 }, level: 0.75, room }));
      return (await originCeiling(await carrying(request("POST", "/mcp", { body: toolCall(1) }), deps), deps)) as Refusal;
    };
    const types = (r: Refusal) => (r.data!.challenges as Array<{ type: string }>).map((c) => c.type);
    const both = await free({});
    expect(both.status).toBe(402);
    expect(types(both)).toEqual(["pow", "x402"]);
    // The challenge asks the plan's difficulty and the congestion's 2 extra bits.
    expect([both.data!.difficulty, (both.data!.challenges as Array<{ difficulty?: number }>)[0]!.difficulty]).toEqual([10, 10]);
    expect(types(await free({ worked: false }))).toEqual(["x402"]);
    const none = await free({ worked: false, paid: false });
    expect([none.status, none.data!.layer]).toEqual([429, "origin"]);
  });

  it("the shard failing: 503, its reason the failure's kind (the runtime's flags); overloaded: Retry-After 5 s", async () => {
    const failing = async (err: Error) => {
      const deps = withOrigin(fakeOrigin({ fails: err }));
      return (await originCeiling(await carrying(request("POST", "/mcp", { body: toolCall(1) }), deps), deps)) as Refusal;
    };
    const unreachable = await failing(Object.assign(new Error("network connection lost"), { retryable: true }));
    expect([unreachable.status, unreachable.reason?.reason, unreachable.retryAfter]).toEqual([503, "origin_gate_unreachable", 1]);
    const overloaded = await failing(Object.assign(new Error("Durable Object is overloaded"), { overloaded: true, retryable: false }));
    expect([overloaded.status, overloaded.reason?.reason, overloaded.retryAfter]).toEqual([
      503,
      "origin_gate_overloaded",
      OVERLOADED_RETRY_AFTER_S,
    ]);
    const thrown = await failing(Object.assign(new TypeError("bad call"), { remote: true }));
    expect([thrown.status, thrown.reason?.reason]).toEqual([503, "origin_gate_error"]);
  });
});

describe("the free share", () => {
  it("a free request admitted under congestion takes ceil(cost / free share) of its free bucket, at most its capacity; other classes their cost", async () => {
    const at = async (level: number, headers: Record<string, string> = {}, cost = 1) => {
      const deps = withOrigin(fakeOrigin({ level }));
      const batch = Array.from({ length: cost }, (_, i) => toolCall(i));
      return ((await originCeiling(await carrying(request("POST", "/mcp", { body: batch, headers }), deps), deps)) as Metered).admit.cost;
    };
    expect(await at(0.5)).toBe(1);
    // ℓ 0.8: free share 0.46.
    expect(await at(0.8)).toBe(3);
    expect(await at(0.8, {}, 2)).toBe(5);
    // ℓ 1: free share 0.1: a cost of 2 would take 20; the bucket holds 10.
    expect(await at(1, {}, 2)).toBe(10);
    expect(await at(1, { "x-api-key": KEY })).toBe(1);
  });
});
