/**
 * Reading a request body: which bodies the gateway reads at all (one reading: the bytes it
 * prices are the bytes the origin parses), within a size and a time limit.
 */

/** The media type of a request's `Content-Type`, lowercased, without parameters ("" when absent). */
export function mediaType(request: Request): string {
  return (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
}

/**
 * The only `Content-Type` spellings a JSON-RPC POST may carry: `application/json`, alone or
 * with one `charset=utf-8` parameter (case-insensitive, quoted or not, optional whitespace
 * around `;` as RFC 9110 §5.6.6 allows). Anything else could make the origin read the bytes
 * another way than the gateway (body-parser honours `charset=utf-7`, `utf-16`, …).
 */
const JSON_UTF8 = /^application\/json(?:[ \t]*;[ \t]*charset=(?:utf-8|"utf-8"))?$/i;
/** A `charset` parameter, to name it in the refusal. */
const CHARSET = /;[ \t]*charset[ \t]*=[ \t]*("?)([^";, \t]*)\1/i;

/**
 * Whether a POST to the MCP endpoint may be read as JSON-RPC: the gateway reads bodies as
 * UTF-8 JSON only, and forwards them as exactly that, so nothing in the request may ask the
 * origin for another reading.
 *
 * Accepted: `Content-Type: application/json` (any case), optionally with a single
 * `charset=utf-8` (any case, quoted or not), and no `Content-Encoding` other than `identity`.
 * Refused: another media type or charset (`utf-7`, `utf-16`, `latin1`, …), any other
 * parameter, a repeated `Content-Type` (which Workers joins as `a, b`), a compressed body.
 * @returns null when acceptable, else the message of the 415 (JSON-RPC error `code` 415)
 */
export function jsonRequestProblem(headers: Headers): string | null {
  const encoding = headers.get("content-encoding");
  if (encoding !== null && encoding.trim().toLowerCase() !== "identity" && encoding.trim() !== "") {
    return `Unsupported Media Type: Content-Encoding ${JSON.stringify(encoding.slice(0, 64))} is not accepted; send the JSON body uncompressed`;
  }
  const raw = headers.get("content-type");
  if (raw === null || raw.trim() === "") return "Unsupported Media Type: POST takes Content-Type application/json, got none";
  const value = raw.trim();
  if (JSON_UTF8.test(value)) return null;
  const shown = JSON.stringify(value.slice(0, 100));
  if (value.includes(",")) return `Unsupported Media Type: one Content-Type application/json expected, got several: ${shown}`;
  const type = value.split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") return `Unsupported Media Type: POST takes application/json, got ${JSON.stringify(type.slice(0, 100))}`;
  const charset = CHARSET.exec(value);
  if (charset && charset[2]!.toLowerCase() !== "utf-8") {
    return `Unsupported Media Type: charset ${JSON.stringify(charset[2]!.slice(0, 40))} is not accepted; JSON bodies are read as UTF-8 only (charset=utf-8 or none)`;
  }
  return `Unsupported Media Type: Content-Type ${shown} has parameters other than a single charset=utf-8`;
}

/** Returned by `readBody` when the body is larger than the limit. */
export const TOO_LARGE = Symbol("too large");
/** Returned by `readBody` when the whole body did not arrive within the time limit. */
export const TOO_SLOW = Symbol("too slow");

/**
 * Read a request body, stopping as soon as it exceeds `maxBytes` (a `Content-Length`
 * above the limit is refused before reading anything) or when the whole body has not
 * arrived `timeoutMs` after the call. In both cases the body stream is cancelled.
 * @param maxBytes limit in bytes
 * @param timeoutMs limit in milliseconds on the whole read (default: none)
 * @returns the bytes (`null` when there is no body), `TOO_LARGE` or `TOO_SLOW`
 */
export function readBody(request: Request, maxBytes: number): Promise<Uint8Array<ArrayBuffer> | null | typeof TOO_LARGE>;
export function readBody(
  request: Request,
  maxBytes: number,
  timeoutMs: number,
): Promise<Uint8Array<ArrayBuffer> | null | typeof TOO_LARGE | typeof TOO_SLOW>;
export async function readBody(
  request: Request,
  maxBytes: number,
  timeoutMs?: number,
): Promise<Uint8Array<ArrayBuffer> | null | typeof TOO_LARGE | typeof TOO_SLOW> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) return TOO_LARGE;
  if (!request.body) return null;
  const reader = request.body.getReader();
  const stop = () => {
    // Not awaited: a stalled body may never settle its cancel either.
    reader.cancel().catch(() => {});
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired =
    timeoutMs === undefined
      ? null
      : new Promise<typeof TOO_SLOW>((resolve) => {
          timer = setTimeout(() => resolve(TOO_SLOW), timeoutMs);
        });
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const next = expired ? await Promise.race([reader.read(), expired]) : await reader.read();
      if (next === TOO_SLOW) {
        stop();
        return TOO_SLOW;
      }
      if (next.done) break;
      total += next.value.byteLength;
      if (total > maxBytes) {
        stop();
        return TOO_LARGE;
      }
      chunks.push(next.value);
    }
  } finally {
    clearTimeout(timer);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
