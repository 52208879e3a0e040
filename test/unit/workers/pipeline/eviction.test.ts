/**
 * The eviction step (workers/pipeline/eviction.ts) with a fake session ender and a fake caller
 * store: a request the object admitted at the session cap goes on only when the origin ended
 * the victim (its DELETE answered 2xx or 404), and the victim's slot is then released; any
 * other answer, or none, refuses it 429 `sessions` saying why, gives its charge and new slot
 * back and lifts the victim's mark. The DELETE names the endpoint, the victim's session and
 * version, and carries the caller's own credential only when the caller is named by it.
 */
import { describe, expect, it } from "vitest";
import type { Eviction } from "../../../../workers/objects/caller-state.ts";
import type { CallerStore } from "../../../../workers/objects/stores.ts";
import { body } from "../../../../workers/pipeline/body.ts";
import { credentials } from "../../../../workers/pipeline/credentials.ts";
import type { EndSessionOutcome, EndSessionRequest } from "../../../../workers/pipeline/deps.ts";
import { eviction } from "../../../../workers/pipeline/eviction.ts";
import { identity } from "../../../../workers/pipeline/identity.ts";
import type { Admitted, Carrying, Known, Read } from "../../../../workers/pipeline/state.ts";
import { Refusal } from "../../../../workers/refusal/refusal.ts";
import { arrival, depsFor, IP, request } from "./support.ts";

/** A caller store recording each call. */
function fakeStore(): CallerStore & { calls: Array<[string, unknown]> } {
  const calls: Array<[string, unknown]> = [];
  return new Proxy(
    { calls },
    { get: (t, m: string) => (m === "calls" ? t.calls : async (arg: unknown) => void calls.push([m, arg])) },
  ) as unknown as CallerStore & {
    calls: Array<[string, unknown]>;
  };
}

const lim = { success: true, limit: 10, remaining: 9, reset: 0, retryAfterSeconds: 0 };
const VICTIM: Eviction = { slotId: "victim-slot", sessionId: "s-old", version: "2025-11-25", expiresMs: 0 };

/** Deps whose session ender answers `outcome` and records what it was asked. */
function withEnder(outcome: EndSessionOutcome, policy: Record<string, unknown> = {}) {
  const asked: EndSessionRequest[] = [];
  const deps = depsFor({ limits: { sessions: 2 }, ...policy }, { endSession: async (req) => (asked.push(req), outcome) });
  return { deps, asked };
}

/** An `initialize` (with `headers`) admitted at the cap with `VICTIM` to end first. */
async function admitted(
  deps: ReturnType<typeof depsFor>,
  headers: Record<string, string> = {},
  over: Partial<Admitted> = {},
): Promise<Admitted & { store: ReturnType<typeof fakeStore> }> {
  const req = request("POST", "/mcp", { headers, body: { jsonrpc: "2.0", id: 1, method: "initialize", params: {} } });
  const known = (await identity((await body(arrival(req), deps)) as Read, deps)) as Known;
  const carrying = (await credentials(known, deps)) as Carrying;
  expect(carrying.slot).toMatchObject({ kind: "session", evict: true });
  const nowMs = carrying.nowMs;
  const decision = { admitted: true, paidBy: "free" as const, bucket: lim, ceiling: lim, evict: { ...VICTIM, expiresMs: nowMs + 120_000 } };
  return { ...carrying, store: fakeStore(), decision, local: null, headers: {}, ...over } as Admitted & {
    store: ReturnType<typeof fakeStore>;
  };
}

describe("the eviction step", () => {
  it("no victim: the request goes on untouched, nothing is sent", async () => {
    const { deps, asked } = withEnder(200);
    const s = await admitted(deps);
    const plain = { ...s, decision: { admitted: true, paidBy: "free" as const, bucket: lim, ceiling: lim } };
    expect(await eviction(plain, deps)).toBe(plain);
    expect(asked).toEqual([]);
  });

  for (const status of [200, 204, 404]) {
    it(`the origin answers the DELETE ${status}: the victim is released and the request goes on`, async () => {
      const { deps, asked } = withEnder(status);
      const s = await admitted(deps);
      const out = await eviction(s, deps);
      expect(out).not.toBeInstanceOf(Refusal);
      expect((out as Admitted).decision.evict).toBeUndefined();
      expect(asked).toEqual([{ caller: `ip:${IP}`, path: "/mcp", sessionId: "s-old", version: "2025-11-25", credential: {}, url: s.url }]);
      await Promise.resolve();
      expect(s.store.calls).toEqual([["evicted", { slotId: "victim-slot", ended: true }]]);
    });
  }

  for (const outcome of [405, 400, 401, 500, "timeout", "unreachable"] as const) {
    it(`the origin answers ${outcome}: 429 \`sessions\` saying why, the new slot given back, the victim's mark lifted`, async () => {
      const { deps } = withEnder(outcome);
      const s = await admitted(deps);
      const out = await eviction(s, deps);
      expect(out).toBeInstanceOf(Refusal);
      const r = out as Refusal;
      expect([r.status, r.code, r.data]).toEqual([429, "sessions", { reason: "sessions", layer: "sessions", retryAfter: 120, max: 2 }]);
      const said =
        typeof outcome === "number" ? `answered ${outcome}` : outcome === "timeout" ? "did not answer in time" : "could not be reached";
      expect(r.message).toContain(`its DELETE ${said}`);
      await Promise.resolve();
      expect(s.store.calls).toEqual([
        ["evicted", { slotId: "victim-slot", ended: false }],
        ["refund", expect.objectContaining({ slotId: s.slot!.id })],
      ]);
      expect(s.store.calls[1]![1]).not.toHaveProperty("unmark");
    });
  }

  it("the caller's own credential goes with the DELETE only when it names the caller", async () => {
    const byKey = withEnder(200, { identity: { strategies: ["api-key-unverified", "ip"] } });
    await eviction(await admitted(byKey.deps, { "x-api-key": "k-1", authorization: "Bearer b" }), byKey.deps);
    expect(byKey.asked[0]!.credential).toEqual({ "x-api-key": "k-1" });

    const byAuth = withEnder(200, { identity: { strategies: ["authorization-unverified", "ip"] } });
    await eviction(await admitted(byAuth.deps, { authorization: "Bearer b" }), byAuth.deps);
    expect(byAuth.asked[0]!.credential).toEqual({ authorization: "Bearer b" });

    // A network caller: its sessions may be other users'.
    const byIp = withEnder(200);
    await eviction(await admitted(byIp.deps, { authorization: "Bearer b", "x-api-key": "k-1" }), byIp.deps);
    expect(byIp.asked[0]!.credential).toEqual({});

    // A request that became a payer's: the identity's credential is not the payer's.
    const payer = withEnder(200, { identity: { strategies: ["authorization-unverified", "ip"] } });
    await eviction(
      await admitted(payer.deps, { authorization: "Bearer b" }, { caller: "evm:0x0000000000000000000000000000000000000001" }),
      payer.deps,
    );
    expect(payer.asked[0]!.credential).toEqual({});
  });

  it("without a session ender (the middleware used alone), a session at the cap is never asked to evict", async () => {
    const deps = depsFor({ limits: { sessions: 2 } });
    const req = request("POST", "/mcp", { body: { jsonrpc: "2.0", id: 1, method: "initialize", params: {} } });
    const known = (await identity((await body(arrival(req), deps)) as Read, deps)) as Known;
    const carrying = (await credentials(known, deps)) as Carrying;
    expect(carrying.slot).toMatchObject({ kind: "session" });
    expect(carrying.slot!.evict).toBeUndefined();
  });
});
