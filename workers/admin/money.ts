/**
 * What `GET <admin>/stats` adds to the `Stats` snapshot for the dashboard's money cards
 * (`money`, docs/admin.md "Money"): the payments each scheme received over the last hour and
 * the last day, in the unit it counts (`paid_total`: sats, atomic units) and in the unit
 * people read (`SchemeWords.shownAs`: sats, USDC at 6 decimals); the credentials redeemed
 * (proof-of-work solves among them); and the difficulty of the latest challenge offered.
 * Everything comes from what the gateway recorded (workers/observe/counters.ts `countersOf`):
 * a payment counts once, when it was redeemed or settled. Pure: no clock, no I/O.
 */
import { counterKey } from "../observe/counters.ts";
import type { Counters, StatsSnapshot } from "../observe/types.ts";
import { SCHEMES } from "../schemes/registry.ts";

/** What one scheme received in a window. */
export interface Received {
  /** The scheme's `type`. */
  scheme: string;
  /** Payments counted (`payments_total`). */
  payments: number;
  /** The amount in the counted unit (`paid_total`), a decimal integer string: sats, or atomic units of the asset. */
  amount: string;
  /** The counted unit: `sats` or `atomic`. */
  unit: "sats" | "atomic";
  /** The amount as people read it: `amount` shifted by `decimals` (exact, no rounding; `"0.02"` for 20 000 atomic units of USDC), and its unit. */
  shown: { amount: string; unit: string; decimals: number };
}

/** A window of the money summary. */
export interface MoneyWindow {
  /** Unix ms where the window starts (the first minute's or hour's start) and ends (the snapshot's time). */
  fromMs: number;
  toMs: number;
  /** One entry per scheme that takes payments (`SchemeWords.shownAs`), in registry order, zeros included. */
  received: Received[];
  /** Credentials redeemed, by scheme `type` (`redeemed_total`): solved challenges under `pow`, first uses of payments. */
  redeemed: Record<string, number>;
}

/** `GET <admin>/stats`'s `money`. */
export interface MoneySummary {
  /** The snapshot's minutes (the last 60). */
  lastHour: MoneyWindow;
  /** The snapshot's hours: the current clock hour and the 23 before it (23 to 24 hours). */
  lastDay: MoneyWindow;
  /** The latest challenge offered among the snapshot's recent decisions (a 402's `difficulty`, bits), or null when none is there. */
  difficulty: { bits: number; atMs: number } | null;
}

/** Sum of `key` over rows of counters. */
function sumOf(rows: readonly { counters: Counters }[], key: string): number {
  let total = 0;
  for (const r of rows) total += r.counters[key] ?? 0;
  return total;
}

/**
 * A non-negative integer amount in a unit with `decimals` more digits, as an exact decimal
 * string: `shiftDecimals(20000, 6)` = `"0.02"`, `shiftDecimals(1234500, 6)` = `"1.2345"`,
 * `shiftDecimals(300, 0)` = `"300"`. Trailing zeros of the fraction are dropped.
 */
export function shiftDecimals(amount: number, decimals: number): string {
  const digits = BigInt(Math.max(0, Math.round(amount))).toString();
  if (decimals <= 0) return digits;
  const padded = digits.padStart(decimals + 1, "0");
  const whole = padded.slice(0, -decimals);
  const fraction = padded.slice(-decimals).replace(/0+$/, "");
  return fraction === "" ? whole : `${whole}.${fraction}`;
}

/** What each scheme received, and what was redeemed, over `rows`. */
function windowOf(rows: readonly { startMs: number; counters: Counters }[], toMs: number): MoneyWindow {
  const received: Received[] = [];
  const redeemed: Record<string, number> = {};
  for (const s of SCHEMES) {
    redeemed[s.type] = sumOf(rows, counterKey("redeemed_total", s.type));
    const shownAs = s.words.shownAs;
    if (!shownAs) continue;
    const unit = shownAs.counted;
    const amount = sumOf(rows, counterKey("paid_total", s.type, unit));
    received.push({
      scheme: s.type,
      payments: sumOf(rows, counterKey("payments_total", s.type)),
      amount: shiftDecimals(amount, 0),
      unit,
      shown: { amount: shiftDecimals(amount, shownAs.decimals), unit: shownAs.unit, decimals: shownAs.decimals },
    });
  }
  return { fromMs: rows[0]?.startMs ?? toMs, toMs, received, redeemed };
}

/** The money summary of a snapshot (`StatsSnapshot` of workers/observe/types.ts). */
export function moneyOf(snap: StatsSnapshot): MoneySummary {
  const offered = snap.recent.find((r) => r.difficulty !== undefined);
  return {
    lastHour: windowOf(snap.minutes, snap.nowMs),
    lastDay: windowOf(snap.hours, snap.nowMs),
    difficulty: offered ? { bits: offered.difficulty!, atMs: offered.time } : null,
  };
}
