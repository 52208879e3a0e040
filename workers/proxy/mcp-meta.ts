/**
 * `_meta` of MCP messages passing through the gateway (MCP "General fields: `_meta`";
 * docs/wire-contract.md §12 "Inside MCP"): taking a value (a scheme's payment) out of a
 * request's `params._meta` before it is forwarded, and adding values (its receipt) to `result._meta`
 * of the origin's JSON-RPC response to that request — a JSON body, or the one SSE event
 * that carries it.
 */

type JsonObject = Record<string, unknown>;

/** A JSON object (not an array, not null). */
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

const encoder = new TextEncoder();
const LF = 0x0a;
const CR = 0x0d;

/**
 * Take `params._meta[key]` out of a single JSON-RPC request.
 * @param raw the request body: UTF-8 JSON, already validated by the caller (`parseBody`:
 *   no duplicate member names, so the value taken is the only one)
 * @param key the `_meta` member, e.g. `"<scheme>/payment"`
 * @returns the value and the body to forward: `JSON.stringify` of the parsed message with
 *   that member deleted, and `_meta` deleted too when nothing else is left in it (so a
 *   request that had no other `_meta` reaches the origin as if it never had one). Every
 *   other member keeps its JSON meaning (numbers as `JSON.parse` reads them: beyond 2^53
 *   they were already rounded when the gateway read them). null when the body is a batch,
 *   not a JSON object, has no object `params._meta`, or no own member `key` in it; never
 *   throws (bad UTF-8 or JSON: null).
 */
export function takeMetaFromRequest(raw: Uint8Array, key: string): { value: unknown; body: Uint8Array } | null {
  const message = parseJson(raw);
  const taken = isObject(message) ? takeFrom(message, key) : null;
  return taken ? { value: taken.value, body: encoder.encode(JSON.stringify(message)) } : null;
}

/**
 * The body without `params._meta[key]` in any of its requests — a single message or each
 * message of a batch — `_meta` deleted where nothing else is left in it (as
 * `takeMetaFromRequest`); null when no message has the member (or the body is not JSON).
 * @param raw the request body, UTF-8 JSON already validated by the caller (`parseBody`)
 * @param key the `_meta` member, e.g. `"<scheme>/payment"`
 */
export function withoutMeta(raw: Uint8Array, key: string): Uint8Array<ArrayBuffer> | null {
  const parsed = parseJson(raw);
  let found = false;
  for (const m of Array.isArray(parsed) ? parsed : [parsed]) if (takeFrom(m, key)) found = true;
  return found ? encoder.encode(JSON.stringify(parsed)) : null;
}

/** UTF-8 JSON, parsed; undefined when it is not (never throws). */
function parseJson(raw: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch {
    return undefined;
  }
}

/** Delete `params._meta[key]` from one message (and `_meta` when left empty): the value taken, or null when it has none. */
function takeFrom(message: unknown, key: string): { value: unknown } | null {
  if (!isObject(message) || !isObject(message.params)) return null;
  const meta = message.params._meta;
  // Own members only: `JSON.parse` makes every member own (`__proto__` included).
  if (!isObject(meta) || !Object.hasOwn(meta, key)) return null;
  const value = meta[key];
  delete meta[key];
  if (Object.keys(meta).length === 0) delete message.params._meta;
  return { value };
}

/** What `annotate` found: meta added, the response to the id seen but left as is, or neither. */
type Found = "added" | "answered" | null;

/**
 * In one JSON-RPC message or batch (parsed), find the first response to `id` — `result`
 * or `error`, no `method` (a server→client request shares the id space of neither side's
 * responses), id equal by type and value (`1` is not `"1"`) — and, when it is a result
 * whose `result` is an object, set `result._meta` to its `_meta` (when an object) merged
 * with `meta`, `meta` winning (the origin cannot forge the gateway's members).
 * An error response, or a result that is not an object, is left untouched.
 */
function annotate(value: unknown, id: string | number, meta: JsonObject): Found {
  for (const m of Array.isArray(value) ? value : [value]) {
    if (!isObject(m) || m.id !== id || "method" in m || !("result" in m || "error" in m)) continue;
    if ("error" in m || !isObject(m.result)) return "answered";
    const own = m.result._meta;
    m.result._meta = isObject(own) ? { ...own, ...meta } : { ...meta };
    return "added";
  }
  return null;
}

/** The media type of a `Content-Type` value, lowercased, without parameters. */
function mediaType(value: string | null): string {
  return (value ?? "").split(";")[0]!.trim().toLowerCase();
}

/**
 * The origin's response with `meta` merged into `result._meta` of its JSON-RPC response to
 * request `id` (see `annotate`: results only; errors, other ids, notifications and server
 * requests untouched).
 *  - `application/json` (one message or a batch array): the body is read whole, parsed,
 *    modified and re-serialized with `JSON.stringify`; a body that is not UTF-8 JSON, or
 *    holds no such result, passes byte for byte.
 *  - `text/event-stream` (WHATWG HTML §9.2): streamed; only the event whose `data` is the
 *    response to `id` is rewritten (see `sseTransform`), every other byte passes unchanged.
 *  - any other type, or no body: `res` itself.
 * Status, status text and headers are kept, except `Content-Length` (dropped whenever the
 * body is transformed). `res.body` is consumed: use only the response returned.
 * @param meta members to add, e.g. `{ "<scheme>/payment-response": receipt }`
 */
export function addResultMeta(res: Response, id: string | number, meta: Record<string, unknown>): Response {
  const type = mediaType(res.headers.get("content-type"));
  if (!res.body || (type !== "application/json" && type !== "text/event-stream")) return res;
  const transform = type === "application/json" ? jsonTransform(id, meta) : sseTransform(id, meta);
  const headers = new Headers(res.headers);
  headers.delete("content-length");
  return new Response(res.body.pipeThrough(transform), { status: res.status, statusText: res.statusText, headers });
}

/** Bytes of `parts`, joined. */
function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** A JSON body: held whole, then given `meta` (or passed unchanged, see `addResultMeta`). */
function jsonTransform(id: string | number, meta: JsonObject): TransformStream<Uint8Array, Uint8Array> {
  const chunks: Uint8Array[] = [];
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk) {
      chunks.push(chunk);
    },
    flush(controller) {
      if (chunks.length === 0) return;
      const bytes = concat(chunks);
      let value: unknown;
      try {
        value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      } catch {
        controller.enqueue(bytes);
        return;
      }
      controller.enqueue(annotate(value, id, meta) === "added" ? encoder.encode(JSON.stringify(value)) : bytes);
    },
  });
}

/**
 * Where SSE events end in a stream read chunk by chunk (WHATWG HTML §9.2.6): lines end with
 * CRLF, LF or CR, and an event ends with the first empty line. A CR ending an empty line
 * waits for the next byte, which may be its LF (`endPending`), so the cuts do not depend on
 * how the bytes were split.
 */
function eventScanner(): { ends(chunk: Uint8Array): number[]; endPending(): boolean } {
  /** No byte yet in the current line. */
  let lineEmpty = true;
  /** The previous byte was a CR: an LF now belongs to its line end. */
  let afterCR = false;
  /** A CR ended an empty line: the event ends after it, or after the LF that follows. */
  let endPending = false;

  /** Ends (exclusive indices in `chunk`) of the events that complete within it. */
  const ends = (chunk: Uint8Array): number[] => {
    const found: number[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (endPending) {
        endPending = false;
        afterCR = false;
        lineEmpty = true;
        if (b === LF) {
          found.push(i + 1);
          continue;
        }
        found.push(i);
        // `b` is the first byte of the next event: read on.
      } else if (afterCR) {
        afterCR = false;
        if (b === LF) continue;
      }
      if (b === LF || b === CR) {
        if (lineEmpty) {
          if (b === LF) found.push(i + 1);
          else endPending = true;
        } else {
          lineEmpty = true;
          afterCR = b === CR;
        }
      } else {
        lineEmpty = false;
      }
    }
    return found;
  };

  return { ends, endPending: () => endPending };
}

/**
 * An SSE body, streamed. Events are delimited as WHATWG HTML §9.2.6 reads them: lines end
 * with CRLF, LF or CR, and an event ends with the first empty line. Until the response to
 * `id` has passed, each event is held until its empty line (never more than one event),
 * then passed on unchanged — or, when its `data` is that response, rewritten by
 * `rewriteEvent`. From then on chunks pass through as they arrive. Events are cut where the
 * bytes say, whatever the chunking (a CR ending an empty line waits for the next byte, which
 * may be its LF), so the output does not depend on how the origin's bytes were split.
 * An unfinished event at the end of the stream passes unchanged (a client discards it).
 */
function sseTransform(id: string | number, meta: JsonObject): TransformStream<Uint8Array, Uint8Array> {
  /** Bytes of the current event from earlier chunks (not yet passed on). */
  const held: Uint8Array[] = [];
  /** The response to `id` has passed: the rest streams through untouched. */
  let answered = false;
  /** The next event is the stream's first (which may begin with a BOM). */
  let first = true;
  const scanner = eventScanner();

  /** One complete event: its bytes to pass on, and whether it answered `id`. */
  const event = (bytes: Uint8Array): { bytes: Uint8Array; answered: boolean } => {
    const isFirst = first;
    first = false;
    const out = rewriteEvent(bytes, isFirst, id, meta);
    if (out === null || out === "answered") return { bytes, answered: out === "answered" };
    return { bytes: out, answered: true };
  };

  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (answered) {
        controller.enqueue(chunk);
        return;
      }
      /** `chunk` before `from` is dealt with; `[pass, from)` is to pass on unchanged. */
      let from = 0;
      let pass = 0;
      for (const end of scanner.ends(chunk)) {
        // Only the first event completing in `chunk` can have bytes in `held`.
        const bytes = held.length > 0 ? concat([...held, chunk.subarray(from, end)]) : chunk.subarray(from, end);
        const out = event(bytes);
        if (out.bytes === bytes) {
          for (const h of held) controller.enqueue(h);
        } else {
          if (pass < from) controller.enqueue(chunk.subarray(pass, from));
          controller.enqueue(out.bytes);
          pass = end;
        }
        held.length = 0;
        from = end;
        if (out.answered) {
          answered = true;
          if (pass < chunk.length) controller.enqueue(chunk.subarray(pass));
          return;
        }
      }
      if (pass < from) controller.enqueue(chunk.subarray(pass, from));
      // Copied: the origin's chunk may be a view into a larger buffer.
      if (from < chunk.length) held.push(chunk.slice(from));
    },
    flush(controller) {
      if (held.length === 0) return;
      const bytes = concat(held);
      held.length = 0;
      // A CR ending an empty line with nothing after it: the event is complete.
      controller.enqueue(!answered && scanner.endPending() ? event(bytes).bytes : bytes);
    },
  });
}

/** Line ends of SSE (WHATWG HTML §9.2.6), captured by `split`. */
const LINE_END = /(\r\n|\r|\n)/;

/**
 * One complete SSE event (its bytes, its empty line included).
 * @returns the rewritten bytes when its `data` (the `data` lines' values, one leading space
 *   dropped from each, joined with LF) is JSON holding the result for `id`: the same lines in
 *   the same order with the same line ends — `id:`, `event:`, `retry:`, comments and unknown
 *   fields as they were — except that the first `data` line now carries the whole message
 *   (`JSON.stringify` escapes CR and LF, so it is one line; its `data:` or `data: ` prefix
 *   kept) and the other `data` lines are gone. `"answered"` when it holds the response to
 *   `id` but `annotate` left it as is; null otherwise (not UTF-8, no data, not JSON, another
 *   message).
 * @param first whether this is the stream's first event (a leading BOM is kept, not read)
 */
function rewriteEvent(bytes: Uint8Array, first: boolean, id: string | number, meta: JsonObject): Uint8Array | "answered" | null {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
  const bom = first && text.startsWith("\uFEFF") ? "\uFEFF" : "";
  // [line, end, line, end, …, last line ("" after the empty line)]
  const parts = text.slice(bom.length).split(LINE_END);
  const data: string[] = [];
  let firstData = -1;
  for (let k = 0; k < parts.length; k += 2) {
    const line = parts[k]!;
    const colon = line.indexOf(":");
    if ((colon < 0 ? line : line.slice(0, colon)) !== "data") continue;
    const value = colon < 0 ? "" : line.slice(colon + 1);
    data.push(value.startsWith(" ") ? value.slice(1) : value);
    if (firstData < 0) firstData = k;
  }
  if (firstData < 0) return null;
  let message: unknown;
  try {
    message = JSON.parse(data.join("\n"));
  } catch {
    return null;
  }
  const found = annotate(message, id, meta);
  if (found !== "added") return found;
  const prefix = parts[firstData]!.startsWith("data: ") ? "data: " : "data:";
  let out = bom;
  for (let k = 0; k < parts.length; k += 2) {
    const line = parts[k]!;
    const end = parts[k + 1] ?? "";
    const colon = line.indexOf(":");
    const isData = (colon < 0 ? line : line.slice(0, colon)) === "data";
    if (!isData) out += line + end;
    else if (k === firstData) out += prefix + JSON.stringify(message) + end;
  }
  return encoder.encode(out);
}
