/**
 * What the simulation measures (bench/sim/): the origin's load in 100 ms bins, decisions per
 * class and reason, Durable Object calls by kind and the busiest object, each caller against
 * its allowance, and the congestion curve every 30 s.
 */
import { ADMISSION_CLASSES } from "../../shared/limits/origin-classes.ts";
import type { Busiest } from "./world.ts";

/** Why a request was not forwarded. */
export const REFUSALS = ["origin", "budget", "ceiling", "unavailable"] as const;
export type Refusal = (typeof REFUSALS)[number];

/** Kinds of Durable Object calls. */
export const CALL_KINDS = ["caller", "shard", "root"] as const;
export type CallKind = (typeof CALL_KINDS)[number];

/** One 30 s row of the congestion curve. */
export interface CurveRow {
  fromS: number;
  /** ℓ at the row's end (the root's), and what it means. */
  level: number;
  freeShare: number;
  extraBits: number;
  priceFactor: number;
  /** Requests arriving per second, and origin units per second (all, and free). */
  requestsPerS: number;
  originPerS: number;
  freeOriginPerS: number;
  /** Free requests refused per second (at the origin and by the budget). */
  freeRefusedPerS: number;
  /** Units per second by class. */
  byClass: number[];
}

/** Counters of one run. */
export class Stats {
  /** Origin units (JSON-RPC messages forwarded) per 100 ms bin. */
  readonly bins: Float64Array;
  /** Units forwarded per class. */
  readonly forwarded = ADMISSION_CLASSES.map(() => 0);
  /** Refusals per class and reason; `vip` counts those of paying and (non-runaway) verified callers. */
  readonly refused = ADMISSION_CLASSES.map(() => ({ origin: 0, budget: 0, ceiling: 0, unavailable: 0 }) as Record<Refusal, number>);
  readonly vipRefused: Record<Refusal, number> = { origin: 0, budget: 0, ceiling: 0, unavailable: 0 };
  /** The first refusals of paying and verified callers: when, class, why, where. */
  /** Refusals of paying and verified callers per second of the run. */
  readonly vipBySecond = new Map<number, number>();
  readonly vipSamples: Array<{ atMs: number; cls: number; why: Refusal; where: string }> = [];
  readonly calls: Record<CallKind, number> = { caller: 0, shard: 0, root: 0 };
  readonly busiest: Busiest = { calls: 0, name: "", second: 0 };
  readonly busiestShard: Busiest = { calls: 0, name: "", second: 0 };
  requests = 0;
  /** Requests by kind of caller. */
  readonly requestsByKind = new Map<string, number>();
  solves = 0;
  /** Highest load level ℓ the root reached. */
  peakLevel = 0;
  /** Units that ended unspent in isolates' origin leases. */
  expiredLeaseUnits = 0;
  readonly curve: CurveRow[] = [];
  private row: { requests: number; units: number; freeUnits: number; freeRefused: number; byClass: number[] } = {
    requests: 0,
    units: 0,
    freeUnits: 0,
    freeRefused: 0,
    byClass: [0, 0, 0, 0],
  };

  constructor(durationMs: number) {
    this.bins = new Float64Array(Math.ceil(durationMs / 100) + 1);
  }

  /** A request arrived (before any decision). */
  arrived(kind: string): void {
    this.requests++;
    this.row.requests++;
    this.requestsByKind.set(kind, (this.requestsByKind.get(kind) ?? 0) + 1);
  }

  /** `units` messages of class `cls` forwarded to the origin at `nowMs`. */
  forward(cls: number, units: number, nowMs: number): void {
    this.bins[Math.floor(nowMs / 100)]! += units;
    this.forwarded[cls]! += units;
    this.row.units += units;
    this.row.byClass[cls]! += units;
    if (cls === 3) this.row.freeUnits += units;
  }

  /** A request of class `cls` refused for `why`; `vip`: a paying or non-runaway verified caller's. */
  refuse(cls: number, why: Refusal, vip: boolean, nowMs = 0, where = ""): void {
    this.refused[cls]![why]++;
    if (vip) {
      this.vipRefused[why]++;
      if (this.vipSamples.length < 20 && why !== "budget") this.vipSamples.push({ atMs: nowMs, cls, why, where });
      const sec = Math.floor(nowMs / 1000);
      this.vipBySecond.set(sec, (this.vipBySecond.get(sec) ?? 0) + 1);
    }
    if (cls === 3) this.row.freeRefused++;
  }

  /** Close a 30 s row of the curve. */
  closeRow(fromS: number, seconds: number, c: { level: number; freeShare: number; extraBits: number; priceFactor: number }): void {
    const r = this.row;
    this.curve.push({
      fromS,
      ...c,
      requestsPerS: r.requests / seconds,
      originPerS: r.units / seconds,
      freeOriginPerS: r.freeUnits / seconds,
      freeRefusedPerS: r.freeRefused / seconds,
      byClass: r.byClass.map((u) => u / seconds),
    });
    this.row = { requests: 0, units: 0, freeUnits: 0, freeRefused: 0, byClass: [0, 0, 0, 0] };
  }

  /** The largest sum of `windowBins` consecutive bins (units), and where it starts (s). */
  worstWindow(windowBins: number): { units: number; atS: number } {
    let sum = 0;
    let worst = 0;
    let at = 0;
    for (let i = 0; i < this.bins.length; i++) {
      sum += this.bins[i]!;
      if (i >= windowBins) sum -= this.bins[i - windowBins]!;
      if (sum > worst) {
        worst = sum;
        at = (i - windowBins + 1) / 10;
      }
    }
    return { units: worst, atS: Math.max(0, at) };
  }
}
