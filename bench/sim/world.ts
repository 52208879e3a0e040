/**
 * The simulated world (bench/sim/): a clock in whole milliseconds with an event calendar,
 * locations on a sphere with round trips of 10–150 ms by distance, and Durable Objects that
 * serve one call at a time (a call waits while the object is busy; `SERVICE_MS` per call, so
 * about 1,000 calls per second saturate one object).
 */
import { below, type Random } from "./random.ts";

/** Milliseconds an object spends on one call: 1,000 calls/s saturate it. */
export const SERVICE_MS = 1;

/** Events by the millisecond they happen at, run in order of scheduling within a millisecond. */
export class Calendar {
  private readonly ring: Array<Array<() => void>>;
  private readonly size: number;
  now = 0;

  /** @param horizonMs the farthest ahead an event may be scheduled */
  constructor(horizonMs = 1 << 15) {
    this.size = horizonMs;
    this.ring = Array.from({ length: horizonMs }, () => []);
  }

  /** Run `fn` at `atMs` (rounded up to a whole ms, never before the next ms). */
  at(atMs: number, fn: () => void): void {
    const t = Math.max(this.now + 1, Math.ceil(atMs));
    if (t - this.now >= this.size) throw new RangeError(`event ${t - this.now} ms ahead: beyond the calendar's ${this.size} ms`);
    this.ring[t % this.size]!.push(fn);
  }

  /** Advance to `t` and run its events (events they schedule for the same ms are not possible: `at` is ≥ now + 1). */
  run(t: number): void {
    this.now = t;
    const slot = this.ring[t % this.size]!;
    if (slot.length === 0) return;
    this.ring[t % this.size] = [];
    for (const fn of slot) fn();
  }
}

/** Locations: points on a unit sphere, each with a traffic weight (a few big cities, many small ones). */
export interface Locations {
  readonly count: number;
  readonly weight: Float64Array;
  /** Round trip between two locations, ms (10 within one location, up to 150 across the globe). */
  rtt(a: number, b: number): number;
}

/** `count` locations at random points; weight of the i-th largest ∝ 1 / (i + 1)^0.8. */
export function makeLocations(rand: Random, count: number): Locations {
  const xyz = new Float64Array(count * 3);
  const weight = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const z = 2 * rand() - 1;
    const phi = 2 * Math.PI * rand();
    const r = Math.sqrt(1 - z * z);
    xyz[3 * i] = r * Math.cos(phi);
    xyz[3 * i + 1] = r * Math.sin(phi);
    xyz[3 * i + 2] = z;
    weight[i] = 1 / (i + 1) ** 0.8;
  }
  return {
    count,
    weight,
    rtt(a, b) {
      if (a === b) return 10;
      const dot = xyz[3 * a]! * xyz[3 * b]! + xyz[3 * a + 1]! * xyz[3 * b + 1]! + xyz[3 * a + 2]! * xyz[3 * b + 2]!;
      return 10 + (140 * Math.acos(Math.max(-1, Math.min(1, dot)))) / Math.PI;
    },
  };
}

/** Calls per second of the busiest object, and which. */
export interface Busiest {
  calls: number;
  name: string;
  second: number;
}

/** A Durable Object: where it lives, when it is free again, how many calls it served per second. */
export class SimObject {
  busyUntil = 0;
  private second = -1;
  private count = 0;
  readonly name: string;
  readonly loc: number;
  constructor(name: string, loc: number) {
    this.name = name;
    this.loc = loc;
  }

  /**
   * A call that reaches the object at `arriveMs` starts when the object is free: returns the
   * start (the object's clock for the call) and counts it in each of `trackers`.
   */
  serve(arriveMs: number, trackers: readonly Busiest[]): number {
    const start = Math.max(arriveMs, this.busyUntil);
    this.busyUntil = start + SERVICE_MS;
    const sec = Math.floor(start / 1000);
    if (sec !== this.second) {
      this.second = sec;
      this.count = 0;
    }
    this.count++;
    for (const b of trackers) {
      if (this.count > b.calls) {
        b.calls = this.count;
        b.name = this.name;
        b.second = sec;
      }
    }
    return start;
  }
}

/** Pick one of `n` things uniformly. */
export const pick = below;
