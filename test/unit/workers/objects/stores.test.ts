/**
 * The Durable Objects as the gateway reaches them (workers/objects/stores.ts):
 * - `blockChecker`: the per-isolate memo of callers' blocks asked when a payment or a payer's
 *   access token makes a request a payer's (docs/admin.md "Blocking"). An answer is reused for
 *   less than BLOCK_MEMO_MS (5 s) and never past the block's own end; concurrent checks share
 *   one lookup; a failed lookup is not remembered; memory is bounded.
 * - `storeFailure`: the kind of a failed call, from the flags workerd sets on its errors
 *   (`overloaded`, `remote`, `retryable`; Cloudflare, Durable Objects "Error handling").
 * - `boundedStore`: an idempotent call is retried once, on a fresh stub, after a `retryable`
 *   error that is not `overloaded`; an admission, a redemption, a refund, a renewal or a
 *   spend's claim is never retried; every call is bounded by the timeout, its retry included.
 */
import { describe, expect, it } from "vitest";
import type { CallerState } from "../../../../workers/objects/caller-state.ts";
import {
  BLOCK_MEMO_MAX,
  BLOCK_MEMO_MS,
  blockChecker,
  boundedStore,
  StoreTimeoutError,
  storeFailure,
} from "../../../../workers/objects/stores.ts";

/** A lookup over a mutable table of block ends (unix ms), counting its calls per identity. */
function table(blocks: Record<string, number> = {}) {
  const calls: string[] = [];
  let fail = false;
  const lookup = async (id: string) => {
    calls.push(id);
    if (fail) throw new Error("store down");
    return blocks[id] ?? null;
  };
  return { blocks, calls, lookup, setFail: (f: boolean) => (fail = f) };
}

describe("blockChecker", () => {
  it("is 5 s: the documented bound", () => {
    expect(BLOCK_MEMO_MS).toBe(5_000);
  });

  it("asks once per identity per window; a block placed meanwhile applies at the window's end", async () => {
    const t = table();
    const check = blockChecker(t.lookup);
    expect(await check("ip:10.0.0.1", 1_000)).toBeNull();
    t.blocks["ip:10.0.0.1"] = 100_000;
    expect(await check("ip:10.0.0.1", 1_000 + BLOCK_MEMO_MS - 1)).toBeNull();
    expect(t.calls).toEqual(["ip:10.0.0.1"]);
    expect(await check("ip:10.0.0.1", 1_000 + BLOCK_MEMO_MS)).toBe(100_000);
    expect(t.calls).toHaveLength(2);
  });

  it("keeps identities apart", async () => {
    const t = table({ "ip:10.0.0.2": 50_000 });
    const check = blockChecker(t.lookup);
    expect(await check("ip:10.0.0.1", 0)).toBeNull();
    expect(await check("ip:10.0.0.2", 0)).toBe(50_000);
    expect(t.calls).toEqual(["ip:10.0.0.1", "ip:10.0.0.2"]);
  });

  it("never answers a remembered block past its end", async () => {
    const t = table({ "jwt:aa": 3_000 });
    const check = blockChecker(t.lookup);
    expect(await check("jwt:aa", 1_000)).toBe(3_000);
    expect(await check("jwt:aa", 2_999)).toBe(3_000);
    expect(await check("jwt:aa", 3_000)).toBeNull();
    expect(t.calls).toHaveLength(1);
  });

  it("concurrent checks of one identity share one lookup", async () => {
    const t = table({ "key:bb": 9_000 });
    const check = blockChecker(t.lookup);
    const answers = await Promise.all(Array.from({ length: 20 }, () => check("key:bb", 100)));
    expect(new Set(answers)).toEqual(new Set([9_000]));
    expect(t.calls).toHaveLength(1);
  });

  it("a failed lookup rejects the check and is not remembered: the next check asks again", async () => {
    const t = table({ "ip:10.0.0.3": 60_000 });
    const check = blockChecker(t.lookup);
    t.setFail(true);
    await expect(check("ip:10.0.0.3", 0)).rejects.toThrow("store down");
    t.setFail(false);
    expect(await check("ip:10.0.0.3", 1)).toBe(60_000);
    expect(t.calls).toHaveLength(2);
  });

  it("remembers at most `max` identities, forgetting the oldest first", async () => {
    const t = table();
    const check = blockChecker(t.lookup, BLOCK_MEMO_MS, 3);
    for (const id of ["a", "b", "c", "d"]) await check(id, 0);
    await check("b", 1);
    await check("a", 1);
    expect(t.calls).toEqual(["a", "b", "c", "d", "a"]);
    expect(BLOCK_MEMO_MAX).toBe(10_000);
  });
});

/** Errors as workerd throws them from a Durable Object call, with its documented flags. */
const flagged = (message: string, flags: { overloaded?: boolean; remote?: boolean; retryable?: boolean }) =>
  Object.assign(new Error(message), flags);
const OVERLOADED = () => flagged("Durable Object is overloaded. Too many requests queued.", { overloaded: true });
/** Overloaded and retryable both: overloaded wins (a retry deepens the overload). */
const OVERLOADED_RETRYABLE = () =>
  flagged("Durable Object is overloaded. Requests queued for too long.", { overloaded: true, retryable: true });
const REMOTE = () => flagged("Cannot read properties of undefined (reading 'free_tokens')", { remote: true });
/** What workerd threw in this suite's own runs when a connection dropped: remote and retryable. */
const CONNECTION_LOST = () => flagged("Network connection lost.", { remote: true, retryable: true });
const RESET = () => flagged("Durable Object reset because its code was updated.", { retryable: true });

describe("storeFailure", () => {
  it("reads the runtime's flags: overloaded first, then the object's own throw (remote, not retryable), else unreachable; the gateway's bound is a timeout", () => {
    expect(storeFailure(OVERLOADED())).toBe("overloaded");
    expect(storeFailure(OVERLOADED_RETRYABLE())).toBe("overloaded");
    expect(storeFailure(flagged("overloaded, thrown remotely", { overloaded: true, remote: true }))).toBe("overloaded");
    expect(storeFailure(REMOTE())).toBe("error");
    expect(storeFailure(CONNECTION_LOST())).toBe("unreachable");
    expect(storeFailure(RESET())).toBe("unreachable");
    expect(storeFailure(new Error("no flags"))).toBe("unreachable");
    expect(storeFailure(new StoreTimeoutError(500))).toBe("timeout");
    // Flags must be exactly true: a string or a number is no flag.
    expect(storeFailure(Object.assign(new Error("x"), { overloaded: "true", remote: 1 }))).toBe("unreachable");
    for (const odd of [null, undefined, "a string", 42]) expect(storeFailure(odd)).toBe("unreachable");
  });
});

describe("boundedStore: which calls the gateway retries", () => {
  /**
   * A namespace whose stubs fail each call with the next of `faults` (then answer), counting
   * the calls per method and the stubs made.
   */
  function failing(faults: Array<() => Error>) {
    const calls: Record<string, number> = {};
    let stubs = 0;
    const queue = [...faults];
    const ns = {
      idFromName: (name: string) => ({ name }),
      get: () => {
        stubs++;
        return new Proxy(
          {},
          {
            get: (_, method: string) => async () => {
              calls[method] = (calls[method] ?? 0) + 1;
              const fault = queue.shift();
              if (fault) throw fault();
              return method === "blocked" ? { blockedUntilMs: null } : method === "claim" ? { claimed: true } : undefined;
            },
          },
        );
      },
    } as unknown as DurableObjectNamespace<CallerState>;
    return { ns, calls, stubs: () => stubs };
  }
  const REQ = {} as never;

  it("an idempotent call (blocked, revoke, bindSession, release, endSession) failing retryable is retried once, on a fresh stub, and answers", async () => {
    for (const method of ["blocked", "revoke", "bindSession", "release", "endSession"] as const) {
      for (const fault of [CONNECTION_LOST, RESET]) {
        const f = failing([fault]);
        const store = boundedStore(f.ns, 1_000).of("ip:10.0.0.1");
        await expect(store[method](REQ), method).resolves.toEqual(method === "blocked" ? { blockedUntilMs: null } : undefined);
        expect(f.calls[method], method).toBe(2);
        expect(f.stubs(), method).toBe(2);
      }
    }
  });

  it("retried once only: a second retryable failure rejects with it", async () => {
    const f = failing([CONNECTION_LOST, RESET]);
    await expect(boundedStore(f.ns, 1_000).of("ip:10.0.0.1").release(REQ)).rejects.toThrow("Durable Object reset");
    expect(f.calls.release).toBe(2);
  });

  it("never retried: an overloaded object (even flagged retryable), the object's own throw, an error without the retryable flag", async () => {
    for (const fault of [OVERLOADED, OVERLOADED_RETRYABLE, REMOTE, () => new Error("no flags")]) {
      const f = failing([fault]);
      await expect(boundedStore(f.ns, 1_000).of("ip:10.0.0.1").blocked(REQ)).rejects.toThrow(fault().message);
      expect(f.calls.blocked).toBe(1);
    }
  });

  it("never retried, whatever the error: an admission, a redemption, a status (metered), a refund, a renewal, a spend's claim", async () => {
    for (const method of ["admit", "redeem", "status", "refund", "renew", "claim"] as const) {
      const f = failing([CONNECTION_LOST]);
      await expect(boundedStore(f.ns, 1_000).of("ip:10.0.0.1")[method](REQ), method).rejects.toThrow("Network connection lost");
      expect(f.calls[method], method).toBe(1);
      expect(f.stubs(), method).toBe(1);
    }
  });

  it("the timeout bounds the call with its retry: a retry that would run past it rejects StoreTimeoutError", async () => {
    const calls: number[] = [];
    const ns = {
      idFromName: () => ({}),
      get: () => ({
        release: () => {
          calls.push(Date.now());
          return calls.length === 1 ? Promise.reject(CONNECTION_LOST()) : new Promise(() => {});
        },
      }),
    } as unknown as DurableObjectNamespace<CallerState>;
    await expect(boundedStore(ns, 100).of("ip:10.0.0.1").release(REQ)).rejects.toBeInstanceOf(StoreTimeoutError);
    expect(calls).toHaveLength(2);
  });
});
