/**
 * The gateway's decision log as `npm start` prints it: the JSON lines
 * `{"tollbooth":"decision",…}` (workers/observe/observe.ts) picked out of wrangler's output,
 * printed one readable line each under a header (`DECISION_HEADER`), in fixed columns (time,
 * caller, request, decision, why, status, origin, latency; a longer cell is cut with `…`), or
 * as the raw JSON (`--json`). Other output is not printed.
 *
 * A request that is not a JSON-RPC message (a GET, a path other than the endpoint) is shown as
 * `METHOD /path`: the path is the record's `path` when it has one, else taken from the
 * `[wrangler:info] METHOD /path STATUS …` line wrangler prints for the same request (the
 * first unmatched one with the same method and status, within `waitMs` either side).
 */
import type { DecisionRecord } from "../workers/observe/types.ts";

/** The marker a decision line starts with. */
const MARKER = '{"tollbooth":"decision",';
/** wrangler dev's line for each request it served: method, path (no query), status. */
const REQUEST_LINE = /\[wrangler:info\] ([A-Z]+) (\S+) (\d{3})\b/;

/** The columns: title and width in characters (the last, latency, is right-aligned). */
const COLUMNS = [
  ["time", 12],
  ["caller", 20],
  ["request", 34],
  ["decision", 16],
  ["why", 40],
  ["status", 6],
  ["origin", 11],
  ["latency", 8],
] as const;

/**
 * `text` in exactly `width` characters: padded, or cut to `width - 1` and ended with `…`.
 * @param right pad on the left (numbers)
 */
export function cell(text: string, width: number, right = false): string {
  const chars = [...text];
  if (chars.length > width) return `${chars.slice(0, width - 1).join("")}…`;
  return right ? text.padStart(width) : text.padEnd(width);
}

/** Cells joined with two spaces (the last right-aligned). */
function row(cells: readonly string[]): string {
  return cells.map((c, i) => cell(c, COLUMNS[i]![1], i === COLUMNS.length - 1)).join("  ");
}

/** The header line over the decision lines (same columns). */
export const DECISION_HEADER = row(COLUMNS.map(([title]) => title));

/**
 * One record as a readable line, in the header's columns, e.g.
 * `10:41:03.120  ip:127.0.0.1  tools/call echo  payment_required  over_budget, 16 bits  402  -  12 ms`
 * (padded to the column widths).
 * @param r the decision record
 * @param path the request's path, for a record that is not a JSON-RPC message and has no `path` itself
 */
export function formatDecision(r: DecisionRecord, path?: string): string {
  const time = new Date(r.time).toISOString().slice(11, 23);
  const ownPath = r.path ?? path;
  const what = `${r.route !== undefined ? `[${r.route}] ` : ""}${r.rpc ? `${r.rpc}${r.tool ? ` ${r.tool}` : ""}` : `${r.method}${ownPath ? ` ${ownPath}` : ""}`}`;
  const why = [
    r.reason,
    r.scheme && r.scheme !== r.reason ? r.scheme : undefined,
    r.difficulty !== undefined ? `${r.difficulty} bits` : undefined,
    r.redeemed ? "redeemed" : undefined,
    r.credits !== undefined ? `${r.credits} credit${r.credits === 1 ? "" : "s"} left` : undefined,
  ]
    .filter(Boolean)
    .join(", ");
  // What the origin answered: its status, `unreachable`/`timeout`, or `-` when it was not asked.
  const origin = r.originError ?? (r.originStatus !== undefined ? String(r.originStatus) : "-");
  return row([time, r.caller, what, r.decision, why, String(r.status), origin, `${r.latencyMs} ms`]).trimEnd();
}

/** A sink for wrangler's output chunks, with `flush()` to print what still waits for its path. */
export type DecisionPrinter = ((chunk: string) => void) & { flush(): void };

/**
 * A sink for wrangler's output chunks that prints each decision line (lines split across
 * chunks are joined first).
 * @param options.json print the raw JSON line instead of the readable one (at once, no path)
 * @param options.write where lines go
 * @param options.waitMs how long a record without a path waits for wrangler's request line
 *   (and a request line for its record), default 300 ms
 */
export function decisionPrinter(options: { json: boolean; write: (line: string) => void; waitMs?: number }): DecisionPrinter {
  const waitMs = options.waitMs ?? 300;
  let partial = "";
  /** Records waiting for their request line. */
  const pending: Array<{ record: DecisionRecord; timer: ReturnType<typeof setTimeout> }> = [];
  /** Request lines no record claimed yet (wrangler printed them first). */
  const lines: Array<{ method: string; path: string; status: number; timer: ReturnType<typeof setTimeout> }> = [];

  const onRecord = (record: DecisionRecord) => {
    if (record.rpc !== undefined || record.path !== undefined) return options.write(formatDecision(record));
    const at = lines.findIndex((l) => l.method === record.method && l.status === record.status);
    if (at !== -1) {
      const [line] = lines.splice(at, 1);
      clearTimeout(line!.timer);
      return options.write(formatDecision(record, line!.path));
    }
    const entry = {
      record,
      timer: setTimeout(() => {
        pending.splice(pending.indexOf(entry), 1);
        options.write(formatDecision(record));
      }, waitMs),
    };
    entry.timer.unref?.();
    pending.push(entry);
  };
  const onRequestLine = (method: string, path: string, status: number) => {
    const at = pending.findIndex((p) => p.record.method === method && p.record.status === status);
    if (at !== -1) {
      const [entry] = pending.splice(at, 1);
      clearTimeout(entry!.timer);
      return options.write(formatDecision(entry!.record, path));
    }
    const line = { method, path, status, timer: setTimeout(() => lines.splice(lines.indexOf(line), 1), waitMs) };
    line.timer.unref?.();
    lines.push(line);
  };

  const print = (chunk: string) => {
    const split = (partial + chunk).split(/\r?\n/);
    partial = split.pop() ?? "";
    for (const line of split) {
      const at = line.indexOf(MARKER);
      if (at === -1) {
        const m = options.json ? null : REQUEST_LINE.exec(line);
        if (m) onRequestLine(m[1]!, m[2]!, Number(m[3]));
        continue;
      }
      const text = line.slice(at);
      let record: DecisionRecord;
      try {
        record = JSON.parse(text) as DecisionRecord;
      } catch {
        continue;
      }
      if (options.json) options.write(text);
      else onRecord(record);
    }
  };
  return Object.assign(print, {
    flush() {
      for (const entry of pending.splice(0)) {
        clearTimeout(entry.timer);
        options.write(formatDecision(entry.record));
      }
      for (const line of lines.splice(0)) clearTimeout(line.timer);
    },
  });
}
