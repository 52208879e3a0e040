/**
 * `giveBack` (workers/pipeline/give-back.ts) and what an admitted request holds (`heldBy`),
 * against a fake caller store that records every call: a refund goes to what paid (the
 * bucket or the token's credits) with its slot, a payment that did not complete has its
 * balance withdrawn, a slot is released, a lease's units go back to the isolate's lease; the
 * work runs in the background and its failure is logged, never thrown.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { LeaseTable } from "../../../../shared/limits/lease.ts";
import type { AdmitResult } from "../../../../workers/objects/caller-state.ts";
import type { CallerStore } from "../../../../workers/objects/stores.ts";
import { body } from "../../../../workers/pipeline/body.ts";
import { credentials } from "../../../../workers/pipeline/credentials.ts";
import { giveBack, heldBy } from "../../../../workers/pipeline/give-back.ts";
import { identity } from "../../../../workers/pipeline/identity.ts";
import type { Admitted, Carrying, Known, Read } from "../../../../workers/pipeline/state.ts";
import type { PaymentScheme } from "../../../../workers/schemes/contract.ts";
import { arrival, type Deferred, depsFor, request, toolCall } from "./support.ts";

const deps = depsFor();
afterEach(() => vi.restoreAllMocks());

/** A caller store that records each call (method and argument) and answers `fail` methods with a rejection. */
function fakeStore(fail: string[] = []): CallerStore & { calls: Array<[string, unknown]> } {
  const calls: Array<[string, unknown]> = [];
  const store = new Proxy(
    { calls },
    {
      get: (target, method: string) =>
        method === "calls"
          ? target.calls
          : async (arg: unknown) => {
              calls.push([method, arg]);
              if (fail.includes(method)) throw new Error(`${method} is down`);
            },
    },
  );
  return store as unknown as CallerStore & { calls: Array<[string, unknown]> };
}

const decision = (paidBy: AdmitResult["paidBy"]): AdmitResult => ({
  admitted: true,
  paidBy,
  bucket: { success: true, limit: 10, remaining: 9, reset: 0, retryAfterSeconds: 0 },
  ceiling: { success: true, limit: 60, remaining: 59, reset: 0, retryAfterSeconds: 0 },
});

/** An admitted request, as the admission step leaves it, for `req`. */
async function admitted(req: Request, store: CallerStore, over: Partial<Admitted> = {}, deferred: Deferred = []): Promise<Admitted> {
  const known = (await identity((await body(arrival(req, deferred), deps)) as Read, deps)) as Known;
  const carrying = (await credentials(known, deps)) as Carrying;
  // A request costing `over.cost` is charged it (what the caller's object was asked: `admit.cost`).
  const admit = over.cost !== undefined ? { ...carrying.admit, cost: over.cost } : carrying.admit;
  return { ...carrying, admit, cls: "free", origin: null, store, decision: decision("bucket"), local: null, headers: {}, ...over };
}

describe("what an admitted request holds", () => {
  it("charged to the bucket: a refund of its cost to the bucket, with its slot, deferred; the request does not wait", async () => {
    const store = fakeStore();
    const deferred: Deferred = [];
    const s = await admitted(
      request("POST", "/mcp", { body: { jsonrpc: "2.0", id: 1, method: "initialize", params: {} } }),
      store,
      { cost: 1 },
      deferred,
    );
    const before = Date.now();
    await giveBack(heldBy(s, deps, "charge"), s.ctx.defer);
    expect(deferred.map((d) => d.what)).toEqual(["CallerState.refund"]);
    expect(store.calls).toEqual([
      ["refund", { nowMs: expect.any(Number), bucket: s.plan.bucket, cost: 1, paidBy: "bucket", slotId: s.slot!.id }],
    ]);
    expect((store.calls[0]![1] as { nowMs: number }).nowMs).toBeGreaterThanOrEqual(before);
  });

  it("charged to a token: the refund names the token, so its credits come back", async () => {
    const store = fakeStore();
    const s = await admitted(request("POST", "/mcp", { body: toolCall(1) }), store, {
      decision: decision("token"),
      admit: {
        cost: 1,
        nowMs: 0,
        bucket: { capacity: 1, refillPerSecond: 1 },
        ceiling: { capacity: 1, refillPerSecond: 1 },
        tokenId: "tok-1",
      },
    });
    await giveBack(heldBy(s, deps, "charge"));
    expect(store.calls).toEqual([["refund", expect.objectContaining({ paidBy: "token", tokenId: "tok-1", cost: 1 })]]);
  });

  it("a payment still to complete: what admitting it took is its balance, withdrawn (revoke), not a refund", async () => {
    const store = fakeStore();
    const redeem = {
      spendId: "pay:1",
      spendUntilMs: Date.now() + 60_000,
      jti: "jti-1",
      credits: 5,
      tokenExpiresMs: Date.now() + 60_000,
      reusable: false,
      prefix: "pay",
      solve: false,
    };
    const base = await admitted(request("POST", "/mcp", { body: toolCall(1) }), store);
    const s: Admitted = {
      ...base,
      admit: { ...base.admit, redeem },
      credential: { ...base.credential, carried: true, settlement: { scheme: {} as PaymentScheme, credential: {} } },
    };
    await giveBack(heldBy(s, deps, "taken"));
    await giveBack(heldBy(s, deps, "charge"));
    expect(store.calls).toEqual([
      ["revoke", { jti: "jti-1" }],
      ["refund", expect.objectContaining({ tokenId: "jti-1" })],
    ]);
  });

  it("a stream's slot: released", async () => {
    const store = fakeStore();
    const s = await admitted(request("GET", "/mcp"), store);
    await giveBack(heldBy(s, deps, "slot"));
    expect(store.calls).toEqual([["release", { slotId: s.slot!.id }]]);
  });

  it("admitted from this isolate's lease: the units go back to the lease (the ceiling unit stays spent), no Durable Object call", async () => {
    const leases = new LeaseTable();
    const nowMs = Date.now();
    const store = fakeStore();
    const s = await admitted(request("POST", "/mcp", { body: toolCall(1) }), store, {
      cost: 2,
      local: { bucketRemaining: 1, ceilingRemaining: 2 },
    });
    leases.install(s.caller, { units: 3, ceilingUnits: 3, expiresMs: nowMs + 5_000, bucketLeft: 0, ceilingLeft: 0 }, nowMs);
    expect(leases.admit(s.caller, 2, nowMs)).toEqual({ bucketRemaining: 1, ceilingRemaining: 2 });
    await giveBack(heldBy(s, { leases }, "charge"));
    expect(leases.holding(s.caller)).toMatchObject({ units: 3, ceilingUnits: 2 });
    expect(store.calls).toEqual([]);
  });

  it("a store that fails: logged as what failed, the promise still resolves", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const store = fakeStore(["revoke"]);
    await expect(giveBack({ kind: "payment", store, jti: "jti-2" })).resolves.toBeUndefined();
    expect(errors).toHaveBeenCalledWith("tollbooth: CallerState.revoke failed", expect.objectContaining({ message: "revoke is down" }));
  });
});
