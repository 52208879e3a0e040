/**
 * The origin's streams as the proxy passes them back: a GET SSE stream that gives its slot
 * back however it ends (`releaseOnEnd`), and an SSE answer to a POST guarded against the
 * origin resetting it before every request in it was answered (`appendOnReset` for one
 * request, `answerOnReset` for a batch): a final event per unanswered request id
 * (`error.code` 502), after which the stream ends normally.
 */
import { ErrorCode, type JsonRpcId } from "../../shared/jsonrpc.ts";

/**
 * Pass a GET SSE stream through (bytes untouched) and call `release` exactly once when it
 * ends: the origin ends it, it errors, the client cancels it (the origin's stream is then
 * cancelled too, so the origin sees it closed), or `maxMs` passes (the origin's stream is
 * cancelled and the client's ends normally; it resumes with `Last-Event-ID`).
 * @param maxMs longest life of the stream, milliseconds (none when undefined)
 */
export function releaseOnEnd(upstream: ReadableStream<Uint8Array>, release: () => void, maxMs?: number): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finish = () => {
    if (finished) return false;
    finished = true;
    clearTimeout(timer);
    release();
    return true;
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (maxMs === undefined) return;
      timer = setTimeout(() => {
        if (!finish()) return;
        reader.cancel("tollbooth: stream lifetime reached").catch(() => {});
        try {
          controller.close();
        } catch {
          // already closed or errored
        }
      }, maxMs);
    },
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (finish()) controller.error(err);
        return;
      }
      if (finished) return;
      if (chunk.done) {
        finish();
        controller.close();
        return;
      }
      controller.enqueue(chunk.value);
    },
    cancel(reason) {
      finish();
      return reader.cancel(reason);
    },
  });
}

/** `error.message` of the event that answers a request whose SSE stream the origin reset. */
export const RESET_MESSAGE = "origin reset the stream before answering";

/**
 * The end of the last complete SSE event in `bytes`: the index just after its blank line
 * (two line ends in a row; a line ends with CRLF, LF or CR — WHATWG HTML §9.2.6), or 0.
 * A CR as the very last byte may be the first half of a CRLF, so it ends nothing yet.
 */
export function lastEventEnd(bytes: Uint8Array): number {
  let end = 0;
  let lineEnds = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === 10) lineEnds++;
    else if (c === 13) {
      if (i === bytes.length - 1) break;
      if (bytes[i + 1] === 10) i++;
      lineEnds++;
    } else {
      lineEnds = 0;
      continue;
    }
    if (lineEnds >= 2) end = i + 1;
  }
  return end;
}

/** `JSON.stringify` of an id: the key that tells `1` from `"1"`. */
const idKey = (id: unknown) => JSON.stringify(id);

/**
 * Mark as answered the ids of the JSON-RPC responses (`result` or `error`, no `method`)
 * carried by the `data` of complete SSE events in `events`.
 */
function markAnswered(events: string, pending: Map<string, JsonRpcId>): void {
  for (const event of events.split(/(?:\r\n|\r|\n){2}/)) {
    const data = event
      .split(/\r\n|\r|\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
      .join("\n");
    if (!data.includes('"id"')) continue;
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      continue;
    }
    for (const m of Array.isArray(value) ? value : [value]) {
      if (typeof m === "object" && m !== null && "id" in m && !("method" in m) && ("result" in m || "error" in m))
        pending.delete(idKey(m.id));
    }
  }
}

/** The SSE events that answer `ids` with the reset error (`error.code` 502). */
function resetEvents(ids: Iterable<JsonRpcId>): string {
  let events = "";
  for (const id of ids) {
    const answer = { jsonrpc: "2.0", id, error: { code: ErrorCode.BadGateway, message: RESET_MESSAGE } };
    events += `event: message\ndata: ${JSON.stringify(answer)}\n\n`;
  }
  return events;
}

/**
 * Guard an origin's SSE answer to a single-request POST without touching its bytes: the
 * stream is piped natively (no JavaScript per chunk), and if the origin's stream errors
 * before it ended, a blank line (which ends any event the origin left half sent; a client
 * drops it as unparseable) and one event answering each id with `RESET_MESSAGE`
 * (`error.code` 502) are appended; then the stream ends normally. Unlike `answerOnReset`
 * it does not know whether the request was already answered: an origin that resets after
 * answering but before ending its stream yields a second answer for the id, which MCP
 * clients ignore as a response to no pending request.
 * @param upstream the origin's `text/event-stream` body
 * @param ids the request id(s) of the POST body (see `requestIds`)
 */
export function appendOnReset(upstream: ReadableStream<Uint8Array>, ids: JsonRpcId[]): ReadableStream<Uint8Array> {
  const { readable, writable } = new IdentityTransformStream();
  upstream
    .pipeTo(writable, { preventClose: true, preventAbort: true })
    .then(
      () => writable.close(),
      async (err: unknown) => {
        // Also reached when the caller went away (the write side errored): then the
        // writes below fail too, and there is nobody left to answer.
        const writer = writable.getWriter();
        await writer.write(new TextEncoder().encode(`\n\n${resetEvents(ids)}`));
        await writer.close();
        console.error(`tollbooth: origin reset the SSE stream before it ended (${ids.length} request id(s) answered with 502)`, err);
      },
    )
    .catch(() => {});
  return readable;
}

/**
 * Guard an origin's SSE answer to a POST. While some request id is unanswered, complete
 * events pass through (bytes unchanged; a partly received event is held until its blank
 * line) and the ids of the JSON-RPC responses in them are noted; once every id is
 * answered, chunks pass through untouched as they come. If the origin's stream errors
 * before every id was answered, the partial event is dropped and, for each request id not
 * yet answered, one event `event: message` /
 * `data: {"jsonrpc":"2.0","id":<id>,"error":{"code":502,"message":RESET_MESSAGE}}` is
 * appended; then the stream ends normally. A stream the origin ends is passed through as is.
 * @param upstream the origin's `text/event-stream` body
 * @param ids the request ids of the POST body (see `requestIds`)
 */
export function answerOnReset(upstream: ReadableStream<Uint8Array>, ids: JsonRpcId[]): ReadableStream<Uint8Array> {
  const pending = new Map(ids.map((id) => [idKey(id), id] as const));
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  /** Bytes of an event whose blank line has not arrived yet. */
  let held: Uint8Array | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Loop until something is enqueued or the stream is closed: a pull that enqueues
      // nothing is not called again by the stream machinery.
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (pending.size > 0) console.error(`tollbooth: origin reset the SSE stream with ${pending.size} request(s) unanswered`, err);
          if (pending.size > 0) controller.enqueue(encoder.encode(resetEvents(pending.values())));
          controller.close();
          return;
        }
        if (chunk.done) {
          if (held) controller.enqueue(held);
          controller.close();
          return;
        }
        let bytes = chunk.value;
        if (held) {
          const joined = new Uint8Array(held.length + bytes.length);
          joined.set(held);
          joined.set(bytes, held.length);
          bytes = joined;
          held = null;
        }
        if (pending.size === 0) {
          controller.enqueue(bytes);
          return;
        }
        const end = lastEventEnd(bytes);
        if (end < bytes.length) held = bytes.slice(end);
        if (end === 0) continue;
        const complete = end === bytes.length ? bytes : bytes.subarray(0, end);
        // Complete events end on a line end, so they are whole UTF-8 sequences.
        markAnswered(decoder.decode(complete), pending);
        controller.enqueue(complete);
        return;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
