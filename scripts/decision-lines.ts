/**
 * The gateway's decision log as `npm start` prints it: the JSON lines
 * `{"tollbooth":"decision",…}` (workers/observe/observe.ts) picked out of wrangler's output,
 * printed one readable line each (time, caller, method or tool, decision, reason or scheme,
 * status, latency), or as the raw JSON (`--json`). Other output is not printed.
 */
import type { DecisionRecord } from "../workers/observe/types.ts";

/** The marker a decision line starts with. */
const MARKER = '{"tollbooth":"decision",';

/** One record as a readable line, e.g. `10:41:03.120  ip:127.0.0.1       tools/call echo        admitted          bucket                 200    12 ms`. */
export function formatDecision(r: DecisionRecord): string {
  const time = new Date(r.time).toISOString().slice(11, 23);
  const what = r.rpc ? `${r.rpc}${r.tool ? ` ${r.tool}` : ""}` : r.method;
  const why = [r.reason, r.scheme && r.scheme !== r.reason ? r.scheme : undefined, r.difficulty !== undefined ? `${r.difficulty} bits` : undefined, r.redeemed ? "redeemed" : undefined, r.credits !== undefined ? `${r.credits} credit${r.credits === 1 ? "" : "s"} left` : undefined]
    .filter(Boolean)
    .join(", ");
  const origin = r.originError ? ` (origin ${r.originError})` : r.originStatus !== undefined && r.originStatus !== r.status ? ` (origin ${r.originStatus})` : "";
  return `${time}  ${r.caller.padEnd(18)} ${what.slice(0, 28).padEnd(28)} ${r.decision.padEnd(18)} ${why.padEnd(36)} ${String(r.status).padStart(3)}${origin} ${String(r.latencyMs).padStart(5)} ms`;
}

/**
 * A sink for wrangler's output chunks that prints each decision line (lines split across
 * chunks are joined first).
 * @param options.json print the raw JSON line instead of the readable one
 * @param options.write where lines go
 */
export function decisionPrinter(options: { json: boolean; write: (line: string) => void }): (chunk: string) => void {
  let partial = "";
  return (chunk) => {
    const lines = (partial + chunk).split(/\r?\n/);
    partial = lines.pop() ?? "";
    for (const line of lines) {
      const at = line.indexOf(MARKER);
      if (at === -1) continue;
      const text = line.slice(at);
      let record: DecisionRecord;
      try {
        record = JSON.parse(text) as DecisionRecord;
      } catch {
        continue;
      }
      options.write(options.json ? text : formatDecision(record));
    }
  };
}
