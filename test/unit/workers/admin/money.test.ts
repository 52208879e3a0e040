/**
 * The money summary of `GET <admin>/stats` (workers/admin/money.ts): what each paying scheme
 * received over the snapshot's hour (its minutes) and day (its hours), counted and shown
 * (sats; USDC from atomic units at 6 decimals, exact), what was redeemed, and the difficulty
 * of the latest challenge offered.
 */
import { describe, expect, it } from "vitest";
import { moneyOf, shiftDecimals } from "../../../../workers/admin/money.ts";
import type { Counters, DecisionRecord, StatsSnapshot } from "../../../../workers/observe/types.ts";

const T0 = Date.UTC(2026, 11, 7, 12, 30, 0);

function snap(minutes: Counters[], hours: Counters[], recent: Partial<DecisionRecord>[] = []): StatsSnapshot {
  return {
    nowMs: T0,
    minutes: minutes.map((counters, i) => ({ startMs: T0 - (minutes.length - 1 - i) * 60_000, counters, latency: [] })),
    hours: hours.map((counters, i) => ({ startMs: T0 - (hours.length - 1 - i) * 3_600_000, counters })),
    totals: {},
    latencyTotals: [],
    latencyMs: { p50: 0, p90: 0, p99: 0 },
    topCallers: [],
    recent: recent as DecisionRecord[],
  };
}

describe("shiftDecimals", () => {
  it("shifts an integer amount exactly, dropping the fraction's trailing zeros", () => {
    expect(shiftDecimals(20_000, 6)).toBe("0.02");
    expect(shiftDecimals(1_234_500, 6)).toBe("1.2345");
    expect(shiftDecimals(1, 6)).toBe("0.000001");
    expect(shiftDecimals(5_000_000, 6)).toBe("5");
    expect(shiftDecimals(0, 6)).toBe("0");
    expect(shiftDecimals(300, 0)).toBe("300");
    // 2^53 - 1 atomic units: no float rounding in the shown amount.
    expect(shiftDecimals(9_007_199_254_740_991, 6)).toBe("9007199254.740991");
  });
});

describe("moneyOf", () => {
  const l402 = (sats: number) => ({
    'payments_total{scheme="l402"}': 1,
    'paid_total{scheme="l402",unit="sats"}': sats,
    'redeemed_total{scheme="l402"}': 1,
  });
  const x402 = (atomic: number) => ({
    'payments_total{scheme="x402"}': 1,
    'paid_total{scheme="x402",unit="atomic"}': atomic,
    'redeemed_total{scheme="x402"}': 1,
  });

  it("sums the hour from the minutes and the day from the hours, per scheme, counted and shown", () => {
    const m = moneyOf(
      snap(
        [l402(10), { 'redeemed_total{scheme="pow"}': 3 }, x402(20_000), l402(25)],
        [
          { ...l402(100), 'redeemed_total{scheme="pow"}': 4 },
          { ...x402(20_000), ...l402(35), 'redeemed_total{scheme="pow"}': 3 },
        ],
      ),
    );
    expect(m.lastHour.received).toEqual([
      { scheme: "l402", payments: 2, amount: "35", unit: "sats", shown: { amount: "35", unit: "sats", decimals: 0 } },
      { scheme: "x402", payments: 1, amount: "20000", unit: "atomic", shown: { amount: "0.02", unit: "USDC", decimals: 6 } },
    ]);
    expect(m.lastHour.redeemed).toEqual({ pow: 3, l402: 2, x402: 1 });
    expect(m.lastHour.fromMs).toBe(T0 - 3 * 60_000);
    expect(m.lastHour.toMs).toBe(T0);
    expect(m.lastDay.received.map((r) => [r.scheme, r.payments, r.amount, r.shown.amount])).toEqual([
      ["l402", 2, "135", "135"],
      ["x402", 1, "20000", "0.02"],
    ]);
    expect(m.lastDay.redeemed.pow).toBe(7);
  });

  it("shows every paying scheme at zero before any payment, and no difficulty before any challenge", () => {
    const m = moneyOf(snap([{}], [{}]));
    expect(m.lastHour.received.map((r) => `${r.shown.amount} ${r.shown.unit}`)).toEqual(["0 sats", "0 USDC"]);
    expect(m.lastDay.redeemed).toEqual({ pow: 0, l402: 0, x402: 0 });
    expect(m.difficulty).toBeNull();
  });

  it("another unit under a scheme's label is not added to its amount", () => {
    const m = moneyOf(snap([{ 'paid_total{scheme="x402",unit="sats"}': 999, 'paid_total{scheme="l402",unit="atomic"}': 5 }], []));
    expect(m.lastHour.received.map((r) => r.amount)).toEqual(["0", "0"]);
  });

  it("the difficulty is the newest recent record's that offered a challenge", () => {
    const m = moneyOf(
      snap(
        [],
        [],
        [
          { time: T0 - 1000, decision: "admitted" },
          { time: T0 - 2000, decision: "payment_required", difficulty: 19 },
          { time: T0 - 3000, decision: "payment_required", difficulty: 16 },
        ],
      ),
    );
    expect(m.difficulty).toEqual({ bits: 19, atMs: T0 - 2000 });
  });
});
