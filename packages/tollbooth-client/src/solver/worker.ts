/**
 * Worker entry of the proof-of-work pool (solver/pool.ts), for Node `worker_threads` and
 * browser module Web Workers. Receives a `WorkerJob`, searches its share of the nonce space
 * until it finds a nonce, the shared stop flag is raised (checked after every batch of
 * 10 000 nonces, ~1–2 ms) or its share is exhausted, and posts one `WorkerReply`.
 */
import { type KernelPath, loadKernel } from "./kernel.ts";
import { createSearch, type SearchTask } from "./search.ts";

/** A search request from the pool. */
export interface WorkerJob extends SearchTask {
  /** Job number (echoed back). */
  id: number;
  /** Force a kernel (default: the fastest available). */
  kernel: KernelPath | undefined;
  /** Int32 stop flag shared by the job's workers (non-zero: stop); absent where SharedArrayBuffer is not. */
  stop: SharedArrayBuffer | undefined;
}

/** The worker's one answer to a job; `hashes` is the nonces it hashed. */
export type WorkerReply =
  | { id: number; kind: "found"; nonce: string; hashes: number }
  | { id: number; kind: "paused" | "exhausted"; hashes: number }
  | { id: number; kind: "error"; message: string; hashes: number };

async function handle(job: WorkerJob): Promise<WorkerReply> {
  try {
    const kernel = await loadKernel(job.kernel);
    const flag = job.stop ? new Int32Array(job.stop) : undefined;
    const search = createSearch(kernel, job);
    const step = search.run(flag ? () => Atomics.load(flag, 0) !== 0 : () => false);
    return step.kind === "found"
      ? { id: job.id, kind: "found", nonce: step.nonce, hashes: search.hashes }
      : { id: job.id, kind: step.kind, hashes: search.hashes };
  } catch (error) {
    return { id: job.id, kind: "error", message: error instanceof Error ? error.message : String(error), hashes: 0 };
  }
}

const isNode = typeof process === "object" && typeof process.versions?.node === "string";
if (isNode) {
  const { parentPort } = await import("node:worker_threads");
  parentPort?.on("message", (job: WorkerJob) => void handle(job).then((reply) => parentPort.postMessage(reply)));
} else {
  const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<WorkerJob>) => void) | null; postMessage(m: unknown): void };
  scope.onmessage = (e) => void handle(e.data).then((reply) => scope.postMessage(reply));
}
