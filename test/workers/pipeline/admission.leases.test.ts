/**
 * Admission leases in workerd (policy `leases: true`; shared/limits/lease.ts,
 * docs/durable-object.md): a busy caller is admitted from the isolate's lease with few calls to
 * its Durable Object, never more than its buckets allow; a lease is renewed in the background;
 * an expired lease is not spent and its units go back; a quiet caller gets no lease; a request
 * the origin ceiling refuses (before the caller's layers) takes nothing from the caller. Calls
 * to the caller's object are counted by wrapping its namespace binding.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  observeOrigin,
  parseLimitList,
  post,
  request,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

let ip: string;
let origin: ReturnType<typeof observeOrigin>;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** The CallerState namespace with every stub method call counted by name. */
function countingBuckets(): { ns: DurableObjectNamespace; calls: Record<string, number> } {
  const real = env.CALLER_BUCKET;
  const calls: Record<string, number> = {};
  const ns = {
    idFromName: (name: string) => real.idFromName(name),
    idFromString: (id: string) => real.idFromString(id),
    newUniqueId: () => real.newUniqueId(),
    getByName: (name: string) => ns.get(real.idFromName(name)),
    get: (id: DurableObjectId) => {
      const stub = real.get(id);
      return new Proxy(stub, {
        get(target, prop) {
          const value = Reflect.get(target, prop) as unknown;
          if (typeof prop !== "string" || typeof value !== "function") return value;
          return (...args: unknown[]) => {
            calls[prop] = (calls[prop] ?? 0) + 1;
            // An RPC method stub is already bound to its object (and has no `apply` of its own).
            return (value as (...a: unknown[]) => unknown)(...args);
          };
        },
      });
    },
  };
  return { ns: ns as unknown as DurableObjectNamespace, calls };
}

const total = (calls: Record<string, number>) => Object.values(calls).reduce((a, b) => a + b, 0);

async function send(gw: (r: Request) => Promise<Response>, id: number): Promise<Response> {
  const res = await gw(post(toolCall(id), { ip }));
  await res.clone().text();
  return res;
}

describe("admission leases", () => {
  it("a caller in budget at 20 requests/s is admitted from leases: at most 0.1 Durable Object calls per admitted request", async () => {
    const { ns, calls } = countingBuckets();
    const gw = gateway(
      { leases: true, bucket: { capacity: 1000, refillPerSecond: 100 }, ceiling: { capacity: 1000, refillPerSecond: 100 } },
      { CALLER_BUCKET: ns as never },
    );
    for (let i = 1; i <= 200; i++) {
      expect((await send(gw, i)).status).toBe(200);
      advance(50);
    }
    expect(origin.requests).toHaveLength(200);
    expect(total(calls) / 200).toBeLessThanOrEqual(0.1);
    expect(calls.renew ?? 0).toBeGreaterThan(0);
  });

  it("an ordinary agent at 2 requests/s, in budget under the default ceiling: at most 0.1 Durable Object calls per admitted request", async () => {
    const { ns, calls } = countingBuckets();
    const gw = gateway({ leases: true, bucket: { capacity: 300, refillPerSecond: 5 } }, { CALLER_BUCKET: ns as never });
    for (let i = 1; i <= 120; i++) {
      expect((await send(gw, i)).status).toBe(200);
      advance(500);
    }
    expect(origin.requests).toHaveLength(120);
    expect(total(calls) / 120).toBeLessThanOrEqual(0.1);
  });

  it("an agent working in bursts (20 calls at 10/s, then 20 s of thinking) asks its object about once per burst: at most 0.1 calls per request", async () => {
    const { ns, calls } = countingBuckets();
    const gw = gateway(
      { leases: true, bucket: { capacity: 1000, refillPerSecond: 10 }, ceiling: { capacity: 1000, refillPerSecond: 10 } },
      { CALLER_BUCKET: ns as never },
    );
    let id = 0;
    for (let burst = 0; burst < 6; burst++) {
      for (let i = 0; i < 20; i++) {
        expect((await send(gw, ++id)).status).toBe(200);
        advance(100);
      }
      advance(20_000);
    }
    expect(origin.requests).toHaveLength(120);
    expect(total(calls) / 120).toBeLessThanOrEqual(0.1);
  });

  it("a burst of 300 concurrent requests within the caller's budget and ceiling is admitted whole: one lease request at a time, and units a concurrent grant brought are spent", async () => {
    const { ns, calls } = countingBuckets();
    const gw = gateway(
      { leases: true, bucket: { capacity: 1000, refillPerSecond: 1 }, ceiling: { capacity: 1000, refillPerSecond: 1 } },
      { CALLER_BUCKET: ns as never },
    );
    for (let i = 1; i <= 3; i++) {
      expect((await send(gw, i)).status).toBe(200);
      advance(30);
    }
    const burst = await Promise.all(Array.from({ length: 300 }, (_, i) => send(gw, 100 + i)));
    expect(burst.map((r) => r.status)).toEqual(new Array(300).fill(200));
    expect(origin.requests).toHaveLength(303);
    expect(total(calls)).toBeLessThan(303);
  });

  it("over budget, exactly the bucket's allowance is admitted and the rest get 402; the origin sees only what was admitted", async () => {
    const gw = gateway({
      leases: true,
      bucket: { capacity: 20, refillPerSecond: 0.0001 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
    });
    const statuses: number[] = [];
    for (let i = 1; i <= 60; i++) {
      statuses.push((await send(gw, i)).status);
      advance(50);
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(20);
    expect(statuses.filter((s) => s === 402)).toHaveLength(40);
    expect(origin.requests).toHaveLength(20);
  });

  it("a burst of concurrent requests from a leased caller admits exactly what the bucket holds, no less", async () => {
    const gw = gateway({
      leases: true,
      bucket: { capacity: 30, refillPerSecond: 0.0001 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
    });
    for (let i = 1; i <= 5; i++) {
      expect((await send(gw, i)).status).toBe(200);
      advance(50);
    }
    const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => send(gw, 100 + i)));
    expect(burst.filter((r) => r.status === 200)).toHaveLength(25);
    expect(burst.filter((r) => r.status === 402)).toHaveLength(15);
    expect(origin.requests).toHaveLength(30);
  });

  it("the ceiling is leased too: never more requests than the ceiling allows, whatever the free bucket holds", async () => {
    const gw = gateway({
      leases: true,
      bucket: { capacity: 1000, refillPerSecond: 100 },
      ceiling: { capacity: 30, refillPerSecond: 0.0001 },
    });
    const statuses: number[] = [];
    for (let i = 1; i <= 80; i++) {
      statuses.push((await send(gw, i)).status);
      advance(50);
    }
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(30);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(28);
    expect(statuses.filter((s) => s !== 200).every((s) => s === 429)).toBe(true);
  });

  it("an expired lease is never spent, and its units go back to the object at the caller's next call", async () => {
    const gw = gateway({
      leases: true,
      bucket: { capacity: 40, refillPerSecond: 0.0001 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
    });
    for (let i = 1; i <= 10; i++) {
      expect((await send(gw, i)).status).toBe(200);
      advance(50);
    }
    // Quiet long past the lease's life: what it held is not lost for good.
    advance(10_000);
    let admitted = 10;
    for (let i = 11; i <= 60; i++) {
      if ((await send(gw, i)).status === 200) admitted++;
      advance(50);
    }
    expect(admitted).toBe(40);
    expect(origin.requests).toHaveLength(40);
  });

  it("RateLimit stays truthful from a lease: `r` never exceeds what is left to admit", async () => {
    const gw = gateway({
      leases: true,
      bucket: { capacity: 30, refillPerSecond: 0.0001 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
    });
    let admitted = 0;
    for (let i = 1; i <= 30; i++) {
      const res = await send(gw, i);
      expect(res.status).toBe(200);
      admitted++;
      const free = parseLimitList(res.headers.get("ratelimit")!).free!;
      expect(free.r).toBeLessThanOrEqual(30 - admitted);
      advance(50);
    }
  });

  it("a request the origin ceiling refuses takes nothing from the caller: no call to its object, nothing from its lease", async () => {
    const { ns, calls } = countingBuckets();
    // The caller's free bucket holds 30 (no refill to speak of); the origin takes 10 from everyone together, 4 of them free (docs/allocation.md).
    const gw = gateway(
      {
        leases: true,
        bucket: { capacity: 30, refillPerSecond: 0.0001 },
        ceiling: { capacity: 1000, refillPerSecond: 100 },
        originCeiling: { capacity: 10, refillPerSecond: 0.01 },
      },
      { CALLER_BUCKET: ns as never },
    );
    const statuses: number[] = [];
    let admitsAfterFourth = 0;
    for (let i = 1; i <= 20; i++) {
      const res = await send(gw, i);
      statuses.push(res.status);
      if (res.status === 402) expect((await errorBody(res)).error.data).toMatchObject({ reason: "origin", layer: "origin" });
      if (i === 4) admitsAfterFourth = calls.admit ?? 0;
      advance(50);
    }
    expect(statuses).toEqual([...Array<number>(4).fill(200), ...Array<number>(16).fill(402)]);
    expect(origin.requests).toHaveLength(4);
    // Refused before the caller's object is asked.
    expect(calls.admit ?? 0).toBe(admitsAfterFourth);
    // 400 s later the origin has room again (0.01 a second, 4 of them free) and the caller's lease
    // has ended. The isolate learns of the room in the background (a class the shard said had
    // none is refused locally until then); the caller's next admitted request hands its lease
    // back to the object. Only the 5 requests the origin answered are spent, 30 − 5: none lost
    // to the 17 refusals.
    advance(400_000);
    expect((await send(gw, 21)).status).toBe(402);
    expect((await send(gw, 22)).status).toBe(200);
    const status = await gw(request("GET", `${WELL_KNOWN}/status`, { ip }));
    expect(status.status).toBe(200);
    expect(((await status.json()) as { bucket: { remaining: number } }).bucket.remaining).toBe(25);
  });

  it("a caller seen once every few seconds gets no lease: each request asks its object, as without leases", async () => {
    const { ns, calls } = countingBuckets();
    const gw = gateway({ leases: true }, { CALLER_BUCKET: ns as never });
    for (let i = 1; i <= 5; i++) {
      expect((await send(gw, i)).status).toBe(200);
      advance(5_000);
    }
    expect(calls.admit).toBe(5);
    expect(calls.renew ?? 0).toBe(0);
  });
});
