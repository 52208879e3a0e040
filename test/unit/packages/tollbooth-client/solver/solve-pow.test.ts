/**
 * The proof-of-work solver (packages/tollbooth-client/src/solver/solve-pow.ts,
 * packages/tollbooth-client/src/solver/*) against node:crypto: nonces it finds verify, the
 * kernels' digests are SHA-256, the SIMD / scalar WebAssembly / JS kernels find the same
 * nonces, and aborting or running out of time stops every thread.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TollboothError } from "../../../../../packages/tollbooth-client/src/errors.ts";
import { type KernelPath, loadKernel, preferredPaths } from "../../../../../packages/tollbooth-client/src/solver/kernel.ts";
import { BATCH, planSalt } from "../../../../../packages/tollbooth-client/src/solver/midstate.ts";
import { poolStats, processorCount } from "../../../../../packages/tollbooth-client/src/solver/pool.ts";
import { batchHits } from "../../../../../packages/tollbooth-client/src/solver/search.ts";
import { digestFor, solvePow } from "../../../../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { leadingZeroBits } from "../../../../../shared/wire/pow.ts";

const PATHS: KernelPath[] = ["wasm-simd", "wasm-scalar", "js"];
const BOUNDARIES = [0, 1, 3, 4, 52, 55, 56, 57, 59, 60, 63, 64, 65, 100, 116, 119, 120, 121, 127, 128, 183, 200];

/** Idle workers the pool keeps after a 2-thread job: one per processor, at most 2 (1 on a 1-CPU machine). */
const IDLE_AFTER_TWO = Math.min(2, processorCount());

const bytesOf = (s: string) => Buffer.byteLength(s, "utf8");
const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest();

/** A string of exactly `n` UTF-8 bytes: the unicode `head` (if it fits) padded with ASCII. */
function exactBytes(head: string, n: number): string {
  const h = bytesOf(head) <= n ? head : "";
  return h + "s".repeat(n - bytesOf(h));
}

/** Salts: ASCII, hex, unicode (1–4-byte characters), and exact byte lengths at block boundaries; 0–200 bytes. */
const salt = fc.oneof(
  fc.string({ unit: "binary-ascii", maxLength: 200 }),
  fc.stringMatching(/^[0-9a-f]{0,200}$/),
  fc.string({ unit: "grapheme", maxLength: 50 }).filter((s) => bytesOf(s) <= 200),
  fc.tuple(fc.string({ unit: "grapheme", maxLength: 6 }), fc.constantFrom(...BOUNDARIES)).map(([head, n]) => exactBytes(head, n)),
);

/** A salt and a nonce of a width the kernel lays out after it (random digits). */
const saltAndNonce = salt.chain((s) => {
  const widths = planSalt(s).layouts.map((l) => l.width);
  return fc
    .constantFrom(...widths)
    .chain((w) => fc.array(fc.integer({ min: 0, max: 9 }), { minLength: w, maxLength: w }))
    .map((digits) => ({ salt: s, nonce: digits.join("") }));
});

function expectValid(s: string, difficulty: number, nonce: string): void {
  expect(nonce).toMatch(/^[0-9]{1,32}$/);
  expect(leadingZeroBits(sha256(s + nonce))).toBeGreaterThanOrEqual(difficulty);
}

async function rejection(promise: Promise<unknown>): Promise<TollboothError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TollboothError);
  return error as TollboothError;
}

afterEach(() => {
  // Whatever a test did, no worker may still be searching once its solve has settled.
  expect(poolStats().busy).toBe(0);
});

describe("solvePow on the calling thread", () => {
  it("finds a nonce that node:crypto verifies, for any salt and difficulty 0–14", async () => {
    await fc.assert(
      fc.asyncProperty(salt, fc.integer({ min: 0, max: 14 }), async (s, difficulty) => {
        const before = performance.now();
        const { nonce, hashes, ms } = await solvePow(s, difficulty, { threads: 1 });
        const around = performance.now() - before;
        expectValid(s, difficulty, nonce);
        expect(hashes).toBeGreaterThanOrEqual(1);
        // `ms` is the solve's own duration: a part of the interval measured around the call (not a clock reading, not seconds).
        expect(ms).toBeGreaterThan(0);
        expect(ms).toBeLessThanOrEqual(around);
      }),
      { numRuns: 150 },
    );
  });

  it("lays out a nonce after every salt tail length", () => {
    for (let n = 0; n < 64 * 3; n++) {
      const { layouts } = planSalt("t".repeat(n));
      expect(layouts.length).toBeGreaterThan(0);
      for (const l of layouts) expect(l.width).toBeLessThanOrEqual(32);
    }
  });

  it("moves on to the next nonce width when the best one runs out of nonces", async () => {
    // After 47 bytes the cheapest layout is a 5-digit nonce: only 100 000 tries.
    const s = "p".repeat(47);
    expect(planSalt(s).layouts[0]!.width).toBe(5);
    const { nonce, hashes } = await solvePow(s, 20, { threads: 1 });
    expectValid(s, 20, nonce);
    expect(hashes > 100_000).toBe(nonce.length !== 5);
  });

  it("stops with `aborted` when the signal fires, and at once for a signal already aborted", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    expect((await rejection(solvePow("abort-me", 80, { threads: 1, signal: controller.signal }))).code).toBe("aborted");
    expect((await rejection(solvePow("abort-me", 1, { threads: 1, signal: AbortSignal.abort() }))).code).toBe("aborted");
  });

  it("stops with `solve_timeout` past maxMs", async () => {
    const error = await rejection(solvePow("too-hard", 80, { threads: 1, maxMs: 50 }));
    expect(error.code).toBe("solve_timeout");
  });

  it("rejects a difficulty outside 0–256 and a thread count below 1", async () => {
    for (const d of [-1, 257, 1.5, Number.NaN]) await expect(solvePow("s", d)).rejects.toThrow(RangeError);
    await expect(solvePow("s", 4, { threads: 0 })).rejects.toThrow(RangeError);
  });
});

describe("kernels", () => {
  it("this runtime (Node) runs WebAssembly SIMD", () => {
    expect(preferredPaths()[0]).toBe("wasm-simd");
  });

  it("compute SHA-256(salt ‖ nonce) as node:crypto does, on every path", async () => {
    await fc.assert(
      fc.asyncProperty(saltAndNonce, async ({ salt: s, nonce }) => {
        const expected = sha256(s + nonce);
        for (const path of PATHS) expect(Buffer.from(await digestFor(s, nonce, path))).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("refuse a nonce width they do not lay out", async () => {
    const widths = planSalt("abc").layouts.map((l) => l.width);
    const other = [5, 6, 7, 8, 9].find((w) => !widths.includes(w))!;
    await expect(digestFor("abc", "1".repeat(other))).rejects.toThrow(RangeError);
  });

  it("find exactly the nonces of a batch that node:crypto finds, on every path", async () => {
    const kernels = await Promise.all(PATHS.map((p) => loadKernel(p)));
    await fc.assert(
      fc.property(salt, fc.nat(), fc.nat({ max: 999 }), fc.integer({ min: 4, max: 9 }), (s, pick, outerNumber, difficulty) => {
        const plan = planSalt(s);
        const layout = plan.layouts[pick % plan.layouts.length]!;
        const outer = String(outerNumber)
          .padStart(layout.width - 4, "0")
          .slice(-(layout.width - 4));
        const expected: number[] = [];
        for (let c = 0; c < BATCH; c++) {
          if (leadingZeroBits(sha256(s + outer + String(c).padStart(4, "0"))) >= difficulty) expected.push(c);
        }
        for (const kernel of kernels) expect(batchHits(kernel, plan, layout, outer, difficulty)).toEqual(expected);
      }),
      { numRuns: 12 },
    );
  });

  it("solve with each forced path, on one thread and on two", async () => {
    for (const kernel of PATHS) {
      for (const threads of [1, 2]) {
        const s = `forced-${kernel}-${threads}`;
        expectValid(s, 12, (await solvePow(s, 12, { kernel, threads })).nonce);
      }
    }
  });
});

describe("solvePow on worker threads", () => {
  it("finds nonces node:crypto verifies, and reuses its workers", async () => {
    await fc.assert(
      fc.asyncProperty(salt, fc.integer({ min: 8, max: 16 }), async (s, difficulty) => {
        expectValid(s, difficulty, (await solvePow(s, difficulty, { threads: 2 })).nonce);
      }),
      { numRuns: 20 },
    );
    expect(poolStats().idle).toBe(IDLE_AFTER_TWO);
  });

  it("uses all threads by default from 18 bits: one worker per processor", async () => {
    // The pool keeps idle workers from earlier tests, so what counts is how many run this job:
    // with 3 processors reported (more than any earlier job used), 3 must be busy at once.
    vi.stubGlobal("navigator", { hardwareConcurrency: 3 });
    try {
      expect(processorCount()).toBe(3);
      const controller = new AbortController();
      let mostBusy = 0;
      const poll = setInterval(() => {
        mostBusy = Math.max(mostBusy, poolStats().busy);
        if (mostBusy >= 3) controller.abort();
      }, 5);
      // 80 bits: no nonce will be found; the abort ends it once all threads were seen working.
      // (Searching on the calling thread instead would block the poll until maxMs.)
      const error = await rejection(solvePow("default-threads", 80, { signal: controller.signal, maxMs: 15_000 }));
      clearInterval(poll);
      expect(error.code).toBe("aborted");
      expect(mostBusy).toBe(3);
      expect(poolStats().busy).toBe(0);
    } finally {
      vi.unstubAllGlobals();
    }
    // Back to this machine's processors; a default solve from 18 bits still finds a valid nonce.
    const { nonce, hashes } = await solvePow("default-threads", 18);
    expectValid("default-threads", 18, nonce);
    expect(hashes).toBeGreaterThan(0);
  });

  it("stops every worker on abort, and they take the next job", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    expect((await rejection(solvePow("abort-workers", 80, { threads: 2, signal: controller.signal }))).code).toBe("aborted");
    expect(poolStats()).toEqual({ idle: IDLE_AFTER_TWO, busy: 0 });
    expectValid("after-abort", 10, (await solvePow("after-abort", 10, { threads: 2 })).nonce);
  });

  it("stops every worker past maxMs with `solve_timeout`", async () => {
    expect((await rejection(solvePow("timeout-workers", 80, { threads: 2, maxMs: 60 }))).code).toBe("solve_timeout");
    expect(poolStats()).toEqual({ idle: IDLE_AFTER_TWO, busy: 0 });
  });
});
