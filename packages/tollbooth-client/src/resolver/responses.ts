/**
 * What the resolver reads from a response and a request, and its one wait: a request body
 * that can be sent twice, a JSON-RPC error body's `error.data.reason`, a cancellable sleep.
 */
import { TollboothError } from "../errors.ts";

/** Whether a request body can be sent again (not a stream). */
export function replayable(body: RequestInit["body"]): boolean {
  return (
    body == null ||
    typeof body === "string" ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof URLSearchParams ||
    (typeof Blob !== "undefined" && body instanceof Blob)
  );
}

/**
 * Wait `ms` milliseconds.
 * @throws TollboothError `aborted` when `signal` fires (or has fired)
 */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new TollboothError("aborted", "wait aborted"));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new TollboothError("aborted", "wait aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A JSON body (the first message of a batch), read from a clone; `undefined` when not JSON. */
export async function jsonBody(res: Response): Promise<unknown> {
  try {
    const body: unknown = JSON.parse(await res.clone().text());
    return Array.isArray(body) ? body[0] : body;
  } catch {
    return undefined;
  }
}

/** `error.data.reason` of a JSON-RPC error body (the first of a batch), read from a clone. */
export async function refusalReason(res: Response): Promise<string | undefined> {
  const reason = ((await jsonBody(res)) as { error?: { data?: { reason?: unknown } } } | null | undefined)?.error?.data?.reason;
  return typeof reason === "string" ? reason : undefined;
}
