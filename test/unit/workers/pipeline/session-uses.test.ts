/**
 * The per-isolate record of sessions used by requests admitted from a lease
 * (workers/pipeline/session-uses.ts): taken once by the next call to the caller's object, the
 * latest use of each session kept, and bounded per caller and in callers.
 */
import { describe, expect, it } from "vitest";
import { SessionUses } from "../../../../workers/pipeline/session-uses.ts";

describe("SessionUses", () => {
  it("hands each caller's uses to the next call once, the latest use of a session winning", () => {
    const uses = new SessionUses();
    uses.note("a", { sessionId: "s-1", atMs: 1_000 });
    uses.note("a", { sessionId: "s-2", atMs: 2_000, version: "2025-11-25" });
    uses.note("a", { sessionId: "s-1", atMs: 3_000 });
    uses.note("b", { sessionId: "s-9", atMs: 1_500 });
    expect(uses.take("a")).toEqual([
      { sessionId: "s-2", atMs: 2_000, version: "2025-11-25" },
      { sessionId: "s-1", atMs: 3_000 },
    ]);
    expect(uses.take("a")).toBeUndefined();
    expect(uses.take("b")).toEqual([{ sessionId: "s-9", atMs: 1_500 }]);
  });

  it("keeps at most maxPerCaller sessions per caller (the longest unused dropped) and maxCallers callers (the longest quiet dropped)", () => {
    const uses = new SessionUses(2, 3);
    for (let i = 1; i <= 5; i++) uses.note("a", { sessionId: `s-${i}`, atMs: i });
    uses.note("b", { sessionId: "x", atMs: 1 });
    uses.note("a", { sessionId: "s-5", atMs: 6 });
    uses.note("c", { sessionId: "y", atMs: 1 });
    expect(uses.take("b")).toBeUndefined();
    expect(uses.take("a")?.map((u) => u.sessionId)).toEqual(["s-3", "s-4", "s-5"]);
    expect(uses.take("c")?.map((u) => u.sessionId)).toEqual(["y"]);
  });
});
