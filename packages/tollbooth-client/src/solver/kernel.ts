/**
 * Kernel loader: the inner loop of the proof-of-work search, in the fastest form the runtime
 * allows — WebAssembly SIMD (four nonces per pass in i32x4 lanes), else scalar WebAssembly,
 * else portable JS on typed arrays (runtimes without WebAssembly, or that refuse to compile it
 * from bytes, such as Cloudflare Workers). All three compute the same thing: for a prepared
 * `Batch` (solver/midstate.ts), hash counters 0–9999 and report the first whose digest
 * word H0 is at most a target. The WebAssembly sources are sha256-pow.wat / sha256-pow-simd.wat.
 */
import type { Batch, NonceLayout } from "./midstate.ts";
import { BATCH, innerWord } from "./midstate.ts";
import { expand, rounds } from "./sha256.ts";
import { SCALAR_WASM_BASE64, SIMD_WASM_BASE64 } from "./sha256-pow.wasm.ts";

/** Which implementation runs the inner loop. */
export type KernelPath = "wasm-simd" | "wasm-scalar" | "js";

/** The inner loop over one batch (one salt, one layout, one set of outer digits). */
export interface Kernel {
  /** The implementation. */
  readonly path: KernelPath;
  /** Load a batch prepared for `layout` (the next calls hash its nonces). */
  load(batch: Batch, layout: NonceLayout): void;
  /**
   * First inner counter in [start, end) (0 ≤ start, end ≤ 10 000) whose digest word H0,
   * read as an unsigned big-endian 32-bit number, is ≤ `target` (0 … 2^32−1); −1 if none.
   */
  search(start: number, end: number, target: number): number;
  /** Digest words H0..H7 for inner counter `inner` (0–9999) of the loaded batch. */
  digest(inner: number): Int32Array;
}

/** Memory offsets shared with the .wat sources (bytes). */
const MID = 0x100,
  ST = 0x120,
  W = 0x200,
  OUT = 0x600,
  TABLE = 0x1000;

/** (module (func (result v128) (v128.const i32x4 0 0 0 0))): valid only where SIMD is. */
const SIMD_PROBE = Uint8Array.from([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 11,
]);

/** Whether this runtime validates WebAssembly SIMD (fixed-width 128-bit) modules. */
export function simdSupported(): boolean {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

function fromBase64(b64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

interface WasmExports {
  memory: WebAssembly.Memory;
  search(start: number, end: number, j: number, t0: number, target: number): number;
  digest(inner: number, j: number, t0: number): void;
}

async function wasmKernel(path: "wasm-simd" | "wasm-scalar"): Promise<Kernel> {
  const simd = path === "wasm-simd";
  const module = await WebAssembly.compile(fromBase64(simd ? SIMD_WASM_BASE64 : SCALAR_WASM_BASE64));
  const instance = await WebAssembly.instantiate(module);
  const x = instance.exports as unknown as WasmExports;
  const mem = new Int32Array(x.memory.buffer);
  // Four spare entries past 9999 so the last SIMD pass can load four lanes.
  for (let c = 0; c < BATCH + 4; c++) mem[TABLE / 4 + c] = innerWord(c % BATCH);
  let j = 0,
    t0 = 16;
  return {
    path,
    load(batch, layout) {
      j = layout.j;
      t0 = layout.t0;
      mem.set(batch.mid, MID / 4);
      mem.set(batch.state, ST / 4);
      if (!simd) mem.set(batch.w.subarray(0, t0), W / 4);
      else for (let t = 0; t < t0; t++) mem.fill(batch.w[t]!, W / 4 + 4 * t, W / 4 + 4 * t + 4);
    },
    search: (start, end, target) => x.search(start, end, j, t0, target | 0),
    digest(inner) {
      x.digest(inner, j, t0);
      const out = new Int32Array(8);
      for (let i = 0; i < 8; i++) out[i] = mem[OUT / 4 + (simd ? 4 * i : i)]!;
      return out;
    },
  };
}

function jsKernel(): Kernel {
  const table = new Int32Array(BATCH);
  for (let c = 0; c < BATCH; c++) table[c] = innerWord(c);
  const mid = new Int32Array(8),
    state = new Int32Array(8),
    w = new Int32Array(64),
    s = new Int32Array(8);
  let j = 0,
    t0 = 16;
  const hash = (inner: number) => {
    w[j] = table[inner]!;
    expand(w, t0, 64);
    s.set(state);
    rounds(s, w, j, 64);
  };
  return {
    path: "js",
    load(batch, layout) {
      j = layout.j;
      t0 = layout.t0;
      mid.set(batch.mid);
      state.set(batch.state);
      w.set(batch.w.subarray(0, t0));
    },
    search(start, end, target) {
      const m0 = mid[0]!;
      for (let c = start; c < end; c++) {
        hash(c);
        if ((s[0]! + m0) >>> 0 <= target) return c;
      }
      return -1;
    },
    digest(inner) {
      hash(inner);
      const out = new Int32Array(8);
      for (let i = 0; i < 8; i++) out[i] = (s[i]! + mid[i]!) | 0;
      return out;
    },
  };
}

const loaded = new Map<KernelPath, Promise<Kernel>>();

/** Paths to try, fastest first, for this runtime. */
export function preferredPaths(): KernelPath[] {
  if (typeof WebAssembly !== "object") return ["js"];
  return simdSupported() ? ["wasm-simd", "wasm-scalar", "js"] : ["wasm-scalar", "js"];
}

/**
 * The kernel for `path` (default: the fastest that loads here), instantiated once per thread.
 * @throws Error when a WebAssembly `path` is asked for and this runtime cannot run it
 */
export async function loadKernel(path?: KernelPath): Promise<Kernel> {
  if (path !== undefined) {
    let kernel = loaded.get(path);
    if (!kernel) {
      if (path === "wasm-simd" && !simdSupported()) throw new Error("this runtime has no WebAssembly SIMD");
      kernel = path === "js" ? Promise.resolve(jsKernel()) : wasmKernel(path);
      loaded.set(path, kernel);
      kernel.catch(() => loaded.delete(path));
    }
    return kernel;
  }
  for (const candidate of preferredPaths()) {
    try {
      return await loadKernel(candidate);
    } catch {
      // e.g. "Wasm code generation disallowed by embedder": try the next one
    }
  }
  return loadKernel("js");
}
