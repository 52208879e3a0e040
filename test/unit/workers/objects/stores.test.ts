/**
 * `blockChecker` (workers/objects/stores.ts): the per-isolate memo of callers' blocks asked
 * when a payment or a payer's access token makes a request a payer's (docs/admin.md
 * "Blocking"). An answer is reused for less than BLOCK_MEMO_MS (5 s) and never past the block's
 * own end; concurrent checks share one lookup; a failed lookup is not remembered; memory is
 * bounded.
 */
import { describe, expect, it } from "vitest";
import { BLOCK_MEMO_MAX, BLOCK_MEMO_MS, blockChecker } from "../../../../workers/objects/stores.ts";

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
