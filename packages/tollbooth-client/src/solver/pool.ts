/**
 * A small pool of search workers (Node `worker_threads`, or module Web Workers in browsers)
 * running solver/worker.ts. Workers are created on first use and kept for the next job;
 * idle workers are `unref`'d, so they never keep a Node process alive. A job takes `threads`
 * workers (idle ones first), gives worker i the batches i, i+threads, i+2·threads, …, and
 * ends on the first nonce found, the `AbortSignal`, the deadline, or exhaustion; the others
 * are stopped through a shared flag they read after every batch (~1–2 ms), and the job
 * settles once every worker has answered. Without SharedArrayBuffer (a browser page that is
 * not cross-origin isolated) stopping terminates the workers instead, and they are replaced.
 *
 * The worker entry is found relative to this module (`new URL("./worker.ts", import.meta.url)`,
 * written inline so bundlers such as Vite and webpack see it). Built packages
 * (packages/build.ts) emit JavaScript, and that build rewrites the two literals to
 * `"./worker.js"` — a worker started on a `.ts` file would fail outside Node ≥ 23.6 and the
 * solver would quietly fall back to one thread.
 */
import type { KernelPath } from "./kernel.ts";
import type { WorkerJob, WorkerReply } from "./worker.ts";

/** How a pool job ended. */
export interface PoolOutcome {
  /** `found`: `nonce` is set; `aborted` / `timeout`: stopped from outside; `exhausted`: no nonce in the space. */
  reason: "found" | "aborted" | "timeout" | "exhausted";
  /** The nonce (ASCII digits) when `reason` is `found`. */
  nonce: string | undefined;
  /** Nonces hashed by all workers. */
  hashes: number;
}

/** A pool job. */
export interface PoolJob {
  /** Challenge salt. */
  salt: string;
  /** Required leading zero bits, 0–256. */
  difficulty: number;
  /** Workers to use (≥ 1). */
  threads: number;
  /** Force a kernel in the workers (default: their fastest). */
  kernel?: KernelPath | undefined;
  /** Stop with reason `aborted` when this fires. */
  signal?: AbortSignal | undefined;
  /** Stop with reason `timeout` after this many milliseconds (default: no limit). */
  maxMs?: number | undefined;
}

interface Handle {
  post(job: WorkerJob): void;
  listener: ((reply: WorkerReply) => void) | undefined;
  failure: ((error: Error) => void) | undefined;
  ref(): void;
  unref(): void;
  terminate(): void;
}

const isNode = typeof process === "object" && typeof process.versions?.node === "string";
const idle: Handle[] = [];
let busy = 0;
let nextId = 1;

/** Whether this runtime can run the pool (Node, or a browser with `Worker`). */
export function workersAvailable(): boolean {
  return isNode || typeof (globalThis as { Worker?: unknown }).Worker === "function";
}

/**
 * Logical processors: `navigator.hardwareConcurrency` (browsers, Node ≥ 21, Deno, Bun), else
 * `os.availableParallelism()` through `process.getBuiltinModule` (Node 20, which has no
 * `navigator`), else 1.
 */
export function processorCount(): number {
  const reported = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  if (typeof reported === "number" && reported >= 1) return Math.floor(reported);
  const getBuiltin = isNode ? (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule : undefined;
  const os = getBuiltin?.call(process, "node:os") as { availableParallelism?: () => number; cpus?: () => unknown[] } | undefined;
  return Math.max(1, os?.availableParallelism?.() ?? os?.cpus?.().length ?? 1);
}

/** Workers alive in the pool: idle, and running a job. */
export function poolStats(): { idle: number; busy: number } {
  return { idle: idle.length, busy };
}

async function spawn(): Promise<Handle> {
  if (isNode) {
    const { Worker } = await import("node:worker_threads");
    const worker = new Worker(new URL("./worker.ts", import.meta.url));
    const handle: Handle = {
      post: (job) => worker.postMessage(job),
      listener: undefined,
      failure: undefined,
      ref: () => worker.ref(),
      unref: () => worker.unref(),
      terminate: () => void worker.terminate(),
    };
    worker.on("message", (reply: WorkerReply) => handle.listener?.(reply));
    worker.on("error", (error) => handle.failure?.(error));
    worker.on("exit", (code) => {
      if (idle.includes(handle)) idle.splice(idle.indexOf(handle), 1);
      handle.failure?.(new Error(`search worker exited (code ${code})`));
    });
    worker.unref();
    return handle;
  }
  // Written inline so that bundlers (Vite, webpack) see and emit the worker module.
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  const handle: Handle = {
    post: (job) => worker.postMessage(job),
    listener: undefined,
    failure: undefined,
    ref: () => {},
    unref: () => {},
    terminate: () => worker.terminate(),
  };
  worker.onmessage = (e: MessageEvent<WorkerReply>) => handle.listener?.(e.data);
  worker.onerror = (e) => handle.failure?.(new Error(`search worker failed: ${e.message}`));
  return handle;
}

function release(handle: Handle): void {
  handle.listener = undefined;
  handle.failure = undefined;
  busy--;
  if (idle.length < processorCount()) {
    handle.unref();
    idle.push(handle);
  } else handle.terminate();
}

/**
 * Search with `job.threads` workers until one finds a nonce or the job is stopped.
 * @returns the outcome, once every worker has stopped
 * @throws Error when a worker cannot start or fails (its message)
 */
export async function searchInWorkers(job: PoolJob): Promise<PoolOutcome> {
  const threads = Math.max(1, Math.floor(job.threads));
  const handles: Handle[] = [];
  try {
    for (let i = 0; i < threads; i++) {
      handles.push(idle.pop() ?? (await spawn()));
      busy++;
    }
  } catch (error) {
    for (const h of handles) release(h);
    throw error;
  }
  const shared = typeof SharedArrayBuffer === "function" ? new SharedArrayBuffer(4) : undefined;
  const flag = shared ? new Int32Array(shared) : undefined;
  const id = nextId++;

  return new Promise<PoolOutcome>((resolve, reject) => {
    let pending = threads;
    let hashes = 0;
    let nonce: string | undefined;
    let stoppedBy: "aborted" | "timeout" | undefined;
    let failure: Error | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;

    const finish = () => {
      if (timer !== undefined) clearTimeout(timer);
      job.signal?.removeEventListener("abort", onAbort);
      if (failure) return reject(failure);
      if (stoppedBy === "aborted") return resolve({ reason: "aborted", nonce: undefined, hashes });
      if (nonce !== undefined) return resolve({ reason: "found", nonce, hashes });
      resolve({ reason: stoppedBy ?? "exhausted", nonce: undefined, hashes });
    };
    const settle = (handle: Handle, reusable: boolean) => {
      if (!handles.includes(handle)) return;
      handles.splice(handles.indexOf(handle), 1);
      if (reusable) release(handle);
      else {
        handle.listener = undefined;
        handle.failure = undefined;
        handle.terminate();
        busy--;
      }
      if (--pending === 0) finish();
    };
    const stopAll = () => {
      if (flag) Atomics.store(flag, 0, 1);
      else for (const h of [...handles]) settle(h, false); // no shared flag: terminate
    };
    const onAbort = () => {
      stoppedBy ??= "aborted";
      stopAll();
    };

    for (const [i, handle] of handles.entries()) {
      handle.listener = (reply) => {
        if (reply.id !== id) return;
        hashes += reply.hashes;
        if (reply.kind === "found") nonce ??= reply.nonce;
        if (reply.kind === "error") failure ??= new Error(`search worker: ${reply.message}`);
        if (reply.kind === "found" || reply.kind === "error") stopAll();
        settle(handle, true);
      };
      handle.failure = (error) => {
        failure ??= error;
        stopAll();
        settle(handle, false);
      };
      handle.ref();
      handle.post({ id, salt: job.salt, difficulty: job.difficulty, first: i, stride: threads, kernel: job.kernel, stop: shared });
    }
    if (job.maxMs !== undefined) {
      timer = setTimeout(() => {
        stoppedBy ??= "timeout";
        stopAll();
      }, job.maxMs);
    }
    if (job.signal?.aborted) onAbort();
    else job.signal?.addEventListener("abort", onAbort, { once: true });
  });
}
