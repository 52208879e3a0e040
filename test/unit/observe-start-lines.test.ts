/** `npm start`'s decision lines (scripts/decision-lines.ts): picked out of wrangler's output, readable or raw. */
import { describe, expect, it } from "vitest";
import { decisionPrinter, formatDecision } from "../../scripts/decision-lines.ts";

const line = JSON.stringify({ tollbooth: "decision", time: Date.UTC(2026, 10, 30, 10, 41, 3, 120), caller: "ip:127.0.0.1", network: "127.0.0.1", plan: "free", method: "POST", cost: 1, decision: "payment_required", reason: "over_budget", status: 402, latencyMs: 12, rpc: "tools/call", tool: "echo", difficulty: 16 });

describe("decisionPrinter", () => {
  it("prints one readable line per decision line, joining lines split across chunks and skipping other output", () => {
    const out: string[] = [];
    const print = decisionPrinter({ json: false, write: (l) => out.push(l) });
    print("[wrangler:info] Ready on http://127.0.0.1:8787\n" + line.slice(0, 40));
    print(line.slice(40) + "\n[wrangler:info] POST /mcp 402 Payment Required (12ms)\n");
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^10:41:03\.120 +ip:127\.0\.0\.1 +tools\/call echo +payment_required +over_budget, 16 bits +402 +12 ms$/);
  });

  it("--json prints the raw JSON line", () => {
    const out: string[] = [];
    decisionPrinter({ json: true, write: (l) => out.push(l) })(`${line}\n{"other":1}\nnot json {"tollbooth":"decision",\n`);
    expect(out).toEqual([line]);
  });

  it("marks an origin that never answered", () => {
    expect(formatDecision({ ...JSON.parse(line), decision: "admitted", reason: "bucket", status: 502, originError: "unreachable" })).toContain("502 (origin unreachable)");
  });
});
