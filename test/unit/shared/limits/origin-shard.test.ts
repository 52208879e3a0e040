/**
 * When a shard of the origin ceiling reports to the root (shared/limits/origin-shard.ts
 * `nextReportMs`, `reportDue`): every second while it is busy or the origin is loaded, 100 ms
 * after it was pressed, every 4 s while it is quiet — and a flood, or the end of one, brings
 * the usual pace back at once.
 */
import { describe, expect, it } from "vitest";
import { MICRO } from "../../../../shared/limits/micro-units.ts";
import { DEFAULT_CLASS_POLICY } from "../../../../shared/limits/origin-classes.ts";
import { DEFAULT_ROOT_SETTINGS } from "../../../../shared/limits/origin-root.ts";
import {
  applyRootReply,
  DEFAULT_SHARD_SETTINGS,
  newShard,
  nextReportMs,
  reportDue,
  rootReport,
  type ShardSettings,
  type ShardState,
  shardCall,
} from "../../../../shared/limits/origin-shard.ts";

const T0 = 1_800_000_000_000;
const settings: ShardSettings = { classes: DEFAULT_CLASS_POLICY, ...DEFAULT_SHARD_SETTINGS };
/** A shard holding 1,000 units refilled at 1,000 units/s: quiet under 250 units/s. */
const share = { cap: 1000 * MICRO, rate: 1_000_000 };

/** The free class asks `units` at `nowMs` (an isolate's call with its demand and nothing else). */
function ask(state: ShardState, units: number, nowMs: number): void {
  shardCall(state, settings, { reports: [], seen: [0, 0, 0, units], want: [0, 0, 0, 0] }, nowMs);
}

/** Report at `nowMs` and apply the root's answer: the same share, load level `level`. */
function report(state: ShardState, nowMs: number, level = 0): void {
  const r = rootReport(state, settings, 0, nowMs);
  applyRootReply(state, settings, { seq: r.seq, share: state.share, level, soon: false }, nowMs);
}

describe("a shard's reports to the root", () => {
  it("a new shard reports at once", () => {
    const s = newShard(share, settings, T0);
    expect(reportDue(s, settings, T0)).toBe(true);
  });

  it("a quiet shard (under a quarter of its refill, level under 0.25) reports every 4 s, not every second", () => {
    const s = newShard(share, settings, T0);
    report(s, T0);
    ask(s, 200, T0 + 500); // 200 units/s over a second: quiet
    expect(nextReportMs(s, settings, T0 + 1_000)).toBe(T0 + 4_000);
    expect(reportDue(s, settings, T0 + 1_000)).toBe(false);
    expect(reportDue(s, settings, T0 + 3_999)).toBe(false);
    expect(reportDue(s, settings, T0 + 4_000)).toBe(true);
    expect(DEFAULT_SHARD_SETTINGS.quietReportMs).toBeLessThan(DEFAULT_ROOT_SETTINGS.staleMs);
  });

  it("a shard asked for a quarter of its refill or more reports every second", () => {
    const s = newShard(share, settings, T0);
    report(s, T0);
    ask(s, 250, T0 + 500);
    expect(reportDue(s, settings, T0 + 999)).toBe(false);
    expect(reportDue(s, settings, T0 + 1_000)).toBe(true);
  });

  it("a flood that starts after a quiet report is reported a second after it, not four", () => {
    const s = newShard(share, settings, T0);
    report(s, T0);
    ask(s, 10, T0 + 100);
    expect(nextReportMs(s, settings, T0 + 200)).toBe(T0 + 4_000);
    ask(s, 2_000, T0 + 900);
    expect(reportDue(s, settings, T0 + 1_000)).toBe(true);
  });

  it("a shard whose traffic just stopped reports that a second later (its last report was busy)", () => {
    const s = newShard(share, settings, T0);
    report(s, T0);
    ask(s, 900, T0 + 500);
    report(s, T0 + 1_000);
    expect(reportDue(s, settings, T0 + 2_000)).toBe(true);
    report(s, T0 + 2_000);
    // That report said nothing was asked: quiet from then on.
    expect(nextReportMs(s, settings, T0 + 2_500)).toBe(T0 + 6_000);
  });

  it("while the origin is loaded (level 0.25 or more) every shard reports every second, asked or not", () => {
    const s = newShard(share, settings, T0);
    report(s, T0, 0.25);
    expect(reportDue(s, settings, T0 + 1_000)).toBe(true);
    report(s, T0 + 1_000, 0.24);
    expect(reportDue(s, settings, T0 + 2_000)).toBe(false);
    expect(reportDue(s, settings, T0 + 5_000)).toBe(true);
  });

  it("a pressed shard (a paid need refused) reports 100 ms after its last report, quiet or not", () => {
    const s = newShard({ cap: 10 * MICRO, rate: 1_000_000 }, settings, T0);
    report(s, T0);
    const reply = shardCall(s, settings, { reports: [], seen: [50, 0, 0, 0], want: [0, 0, 0, 0], need: { cls: 0, units: 50 } }, T0 + 10);
    expect(reply.needMet).toBe(false);
    expect(nextReportMs(s, settings, T0 + 10)).toBe(T0 + 100);
  });
});
