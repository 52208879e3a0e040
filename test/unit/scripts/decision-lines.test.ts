/**
 * `npm start`'s decision lines (scripts/decision-lines.ts): picked out of wrangler's output,
 * readable or raw, in fixed columns under a header.
 */
import { describe, expect, it } from "vitest";
import { DECISION_HEADER, decisionPrinter, formatDecision } from "../../../scripts/decision-lines.ts";

const record = {
  tollbooth: "decision",
  time: Date.UTC(2026, 10, 30, 10, 41, 3, 120),
  caller: "ip:127.0.0.1",
  network: "127.0.0.1",
  plan: "free",
  method: "POST",
  cost: 1,
  decision: "payment_required",
  reason: "over_budget",
  status: 402,
  latencyMs: 12,
  rpc: "tools/call",
  tool: "echo",
  difficulty: 16,
};
const line = JSON.stringify(record);
/** Where each column of the header starts (the last, latency, is right-aligned: it ends where the header ends). */
const starts = [...DECISION_HEADER.matchAll(/\S+/g)].map((m) => m.index).slice(0, -1);
/** The record of a request that is not a JSON-RPC message. */
const plain = (over: object) =>
  JSON.stringify({ ...record, rpc: undefined, tool: undefined, difficulty: undefined, method: "GET", ...over });

describe("decisionPrinter", () => {
  it("prints one readable line per decision line, joining lines split across chunks and skipping other output", () => {
    const out: string[] = [];
    const print = decisionPrinter({ json: false, write: (l) => out.push(l) });
    print(`[wrangler:info] Ready on http://127.0.0.1:8787\n${line.slice(0, 40)}`);
    print(`${line.slice(40)}\n[wrangler:info] POST /mcp 402 Payment Required (12ms)\n`);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^10:41:03\.120 +ip:127\.0\.0\.1 +tools\/call echo +payment_required +over_budget, 16 bits +402 +- +12 ms$/);
  });

  it("--json prints the raw JSON line", () => {
    const out: string[] = [];
    decisionPrinter({ json: true, write: (l) => out.push(l) })(`${line}\n{"other":1}\nnot json {"tollbooth":"decision",\n`);
    expect(out).toEqual([line]);
  });

  it("shows the path of a request that is not a JSON-RPC message, from wrangler's line for it (either order)", () => {
    const out: string[] = [];
    const print = decisionPrinter({ json: false, write: (l) => out.push(l), waitMs: 60_000 });
    const get = plain({ decision: "admitted", reason: "bucket", status: 404, originStatus: 404 });
    print(`${get}\n`);
    expect(out).toEqual([]); // waits for its path
    print("[wrangler:info] POST /mcp 200 OK (3ms)\n[wrangler:info] GET /foo/bar 404 Not Found (68ms)\n");
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/ GET \/foo\/bar +admitted +bucket +404 +404 /);
    // wrangler's line first, the record after.
    print("[wrangler:info] GET /.well-known/tollbooth/status 200 OK (5ms)\n");
    print(`${plain({ decision: "own_endpoint", reason: "status", status: 200 })}\n`);
    expect(out[1]).toMatch(/ GET \/\.well-known\/tollbooth\/status +own_endpoint +status +200 +- /);
  });

  it("a record that carries its path (workers/observe/observe.ts) prints at once with it, without waiting for wrangler's line", () => {
    const out: string[] = [];
    const print = decisionPrinter({ json: false, write: (l) => out.push(l), waitMs: 60_000 });
    print(`${plain({ path: "/favicon.ico", decision: "admitted", reason: "bucket", status: 404, originStatus: 404 })}\n`);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/ GET \/favicon\.ico +admitted +bucket +404 +404 /);
    // wrangler's line for it, later, is claimed by nothing and prints nothing.
    print("[wrangler:info] GET /favicon.ico 404 Not Found (3ms)\n");
    print.flush();
    expect(out).toHaveLength(1);
  });

  it("prints a record whose request line never comes without a path, after waitMs or on flush()", async () => {
    const out: string[] = [];
    const print = decisionPrinter({ json: false, write: (l) => out.push(l), waitMs: 20 });
    print(`${plain({ decision: "admitted", reason: "free", status: 200 })}\n`);
    await new Promise((r) => setTimeout(r, 60));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/ GET +admitted +free +200 /);
    const flushed: string[] = [];
    const other = decisionPrinter({ json: false, write: (l) => flushed.push(l), waitMs: 60_000 });
    other(`${plain({ method: "DELETE", decision: "admitted", reason: "free", status: 204 })}\n`);
    other.flush();
    expect(flushed).toHaveLength(1);
    expect(flushed[0]).toMatch(/ DELETE +admitted +free +204 /);
  });
});

describe("formatDecision", () => {
  it("marks an origin that never answered in the origin column", () => {
    const text = formatDecision({ ...record, decision: "admitted", reason: "bucket", status: 502, originError: "unreachable" } as never);
    expect(text).toMatch(/ 502 +unreachable +12 ms$/);
  });

  it("keeps every column where the header puts it, cutting a long cell with …", () => {
    const long = formatDecision({
      ...record,
      difficulty: undefined,
      caller: `evm:0x${"ab".repeat(20)}`,
      tool: "a-tool-with-a-very-long-name-indeed",
      route: "search",
      reason: "solution",
      scheme: "pow",
      redeemed: true,
      credits: 19,
      originStatus: 200,
      status: 200,
      decision: "admitted",
    } as never);
    const short = formatDecision(record as never);
    for (const text of [long, short]) {
      // Every header column starts with a cell (a non-space after a column gap, or the line's start).
      for (const at of starts)
        expect(text[at!] !== " " && (at === 0 || text.slice(at! - 2, at) === "  "), `${text}\n${DECISION_HEADER}`).toBe(true);
      expect(text.length).toBe(DECISION_HEADER.length);
    }
    expect(long).toContain("evm:0xababababababa… ");
    expect(long).toContain("[search] tools/call a-tool-with-a… ");
    expect(long).toContain("solution, pow, redeemed, 19 credits left");
  });

  it("has a header naming the columns", () => {
    expect(DECISION_HEADER.split(/\s+/)).toEqual(["time", "caller", "request", "decision", "why", "status", "origin", "latency"]);
  });
});
