/**
 * The `OriginGate` Durable Objects of the origin ceiling (workers/objects/origin-gate.ts,
 * docs/allocation.md): a shard lends each admission class its guarantee and the pool down to
 * the class's floor, in whole units, and keeps what it has out on lease across a restart;
 * it reports to the root, whose load level comes back to the isolates in its answers; a
 * shard whose stored state was made under another policy starts afresh; while the isolates'
 * calls flow, they carry the shard's reports and its alarm (a billed invocation) never fires.
 */
import { env, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_CLASS_POLICY, POOL } from "../../../shared/limits/origin-classes.ts";
import type { IsolateCall } from "../../../shared/limits/origin-shard.ts";
import type { OriginConfig } from "../../../workers/objects/origin-gate.ts";
import { advance, freezeTime } from "../support.ts";

const ns = env.ORIGIN_GATE!;
let names = 0;
let prefix: string;

beforeEach(() => {
  freezeTime();
  prefix = `gate-${++names}`;
});

/** Settings of a ceiling of `capacity` messages refilled at `refill` per second, one shard (the root named `<prefix>/root`). */
function config(capacity = 100, refill = 0.001, key = "policy-1"): OriginConfig {
  return {
    key,
    ceiling: { capacity, refillPerSecond: refill },
    shards: 1,
    classes: DEFAULT_CLASS_POLICY,
    curve: { riseSeconds: 2, fallSeconds: 15 },
    root: ns.idFromName(`${prefix}/root`).toString(),
  };
}
const shard = () => ns.getByName(`${prefix}/shard:0`);
/** A call asking nothing but `need` of class `cls` (3: free), with `seen` units asked per class. */
const call = (need?: { cls: number; units: number }, seen = [0, 0, 0, need?.units ?? 0]): IsolateCall => ({
  reports: [],
  seen,
  want: [0, 0, 0, 0],
  need,
});

describe("a shard lends by class", () => {
  it("a class gets its guarantee, then the pool down to its floor, whole or nothing; the reply says which classes have room", async () => {
    // 100 messages: free's guarantee 5, the pool 70 kept down to 21 for the classes above: 54 for free.
    const tooMuch = await shard().shard({ config: config(), shard: 0, call: call({ cls: 3, units: 55 }) });
    expect(tooMuch).toMatchObject({ needMet: false, grants: [] });
    const all = await shard().shard({ config: config(), shard: 0, call: call({ cls: 3, units: 54 }) });
    expect(all.needMet).toBe(true);
    expect(all.grants.map((g) => [g.cls, g.bucket, g.units])).toEqual([
      [3, 3, 5],
      [3, POOL, 49],
    ]);
    expect(all.room).toEqual([true, true, true, false]);
    // Worked keeps its guarantee and the pool down to 10.5: 5 + 10.
    const worked = await shard().shard({ config: config(), shard: 0, call: call({ cls: 2, units: 15 }, [0, 0, 15, 0]) });
    expect(worked.needMet).toBe(true);
    expect(worked.room).toEqual([true, true, false, false]);
  });

  it("keeps what it has out on lease across a restart: an evicted shard lends no unit twice", async () => {
    expect((await shard().shard({ config: config(), shard: 0, call: call({ cls: 3, units: 54 }) })).needMet).toBe(true);
    await evictDurableObject(shard());
    const after = await shard().shard({ config: config(), shard: 0, call: call({ cls: 3, units: 1 }) });
    expect(after).toMatchObject({ needMet: false, grants: [] });
  });

  it("a state stored under another policy is dropped: the shard starts full under the new one", async () => {
    expect((await shard().shard({ config: config(), shard: 0, call: call({ cls: 3, units: 54 }) })).needMet).toBe(true);
    const other = await shard().shard({ config: config(200, 0.001, "policy-2"), shard: 0, call: call({ cls: 3, units: 108 }) });
    expect(other.needMet).toBe(true);
  });

  it("refuses a malformed call, changing nothing", async () => {
    const err = await shard()
      .shard({ config: config(), shard: 0, call: { ...call({ cls: 3, units: 1 }), seen: [1] } })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(String(err)).toMatch(/seen: expected 4 integers/);
    expect((await shard().shard({ config: config(), shard: 0, call: call({ cls: 3, units: 54 }) })).needMet).toBe(true);
  });
});

describe("the load level", () => {
  it("demand over the ceiling's refill reaches the root in the shard's reports, and comes back in the shard's answers", async () => {
    // 10 messages per second; the isolates ask 40 per second of them.
    const c = config(1000, 10);
    expect((await shard().shard({ config: c, shard: 0, call: call(undefined, [0, 0, 0, 40]) })).level).toBe(0);
    for (let i = 0; i < 3; i++) {
      advance(1_000);
      await shard().shard({ config: c, shard: 0, call: call(undefined, [0, 0, 0, 40]) });
    }
    // The root's answers land in the background; the alarm reports what is left.
    advance(1_000);
    await runDurableObjectAlarm(shard());
    await vi.waitFor(async () => expect((await shard().shard({ config: c, shard: 0, call: call() })).level).toBeGreaterThan(0.5), {
      timeout: 5_000,
    });
  });
});

describe("reports to the root", () => {
  /** The shard's alarm (unix ms), once the report in flight has settled and moved it. */
  const alarmOf = () => runInDurableObject(shard(), (_o, state) => state.storage.getAlarm());

  it("calls flowing carry the reports: the alarm waits 500 ms past each report's due time and is moved by every report", async () => {
    // 100 messages per second: a shard asked under 25 per second is quiet.
    const c = config(1000, 100);
    const t0 = Date.now();
    // The first call is reported at once; 5 per second is quiet: the next report in 4 s, its alarm 500 ms later.
    await shard().shard({ config: c, shard: 0, call: call({ cls: 3, units: 5 }) });
    await vi.waitFor(async () => expect(await alarmOf()).toBe(t0 + 4_500));
    // Calls asking 50 per second, a second apart: each makes the report, and the alarm stays 1.5 s ahead.
    for (let i = 1; i <= 3; i++) {
      advance(1_000);
      await shard().shard({ config: c, shard: 0, call: call(undefined, [0, 0, 0, 50]) });
      await vi.waitFor(async () => expect(await alarmOf()).toBe(t0 + i * 1_000 + 1_500));
    }
    // The calls stop: the alarm makes the report (the root hears the demand fell); with nothing
    // asked since and no lease out any more, no further alarm.
    advance(1_500);
    const seq = await runInDurableObject(shard(), (o) => (o as unknown as { held: { state: { seq: number } } }).held.state.seq);
    expect(await runDurableObjectAlarm(shard())).toBe(true);
    await vi.waitFor(async () => expect(await alarmOf()).toBeNull());
    expect(await runInDurableObject(shard(), (o) => (o as unknown as { held: { state: { seq: number } } }).held.state.seq)).toBe(seq + 1);
  });

  it("a paid need refused between two reports moves the alarm to 100 ms after the last report: the report needs no further call", async () => {
    const c = config(100, 100);
    const t0 = Date.now();
    await shard().shard({ config: c, shard: 0, call: call({ cls: 3, units: 5 }) });
    await vi.waitFor(async () => expect(await alarmOf()).toBe(t0 + 4_500));
    advance(50);
    // 1,000 paid units from a ceiling of 100: refused, the shard pressed.
    const refused = await shard().shard({ config: c, shard: 0, call: call({ cls: 0, units: 1_000 }, [1_000, 0, 0, 0]) });
    expect(refused.needMet).toBe(false);
    expect(await alarmOf()).toBe(t0 + 100);
  });
});
