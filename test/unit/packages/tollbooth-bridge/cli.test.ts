/**
 * `tollbooth-bridge` as a process (packages/tollbooth-bridge/src/cli.ts), for what it writes
 * before it connects anywhere: a command line it cannot use gets exit code 2, nothing on
 * stdout (the MCP protocol's channel) and on stderr exactly two lines — the reason and a
 * pointer to `--help` — never the usage text; `--help` prints the usage on stdout as it always
 * has (`USAGE`), exit code 0. The bridge at work is test/e2e/bridge-cli.test.ts's.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { USAGE } from "../../../../packages/tollbooth-bridge/src/args.ts";

const CLI = fileURLToPath(new URL("../../../../packages/tollbooth-bridge/src/cli.ts", import.meta.url));
const run = (args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000, input: "", env: { PATH: process.env.PATH } });

describe("tollbooth-bridge: a command line it cannot use", () => {
  it.each([
    [["https://mcp.example.com/mcp", "--max-dificulty", "20"], "unknown option --max-dificulty; did you mean --max-difficulty?"],
    [[], "missing the MCP server URL"],
    [["https://mcp.example.com/mcp", "--pay", "l402"], "--pay l402 needs --lnd-url"],
  ])("%j: exit code 2, stderr is the reason and a pointer to --help, stdout empty", (args, reason) => {
    const r = run(args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(`tollbooth-bridge: ${reason}\nSee tollbooth-bridge --help for the options.\n`);
  });
});

describe("tollbooth-bridge --help", () => {
  for (const flag of ["--help", "-h"]) {
    it(`${flag}: the usage text on stdout, unchanged; exit code 0`, () => {
      const r = run([flag]);
      expect(r.status).toBe(0);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(USAGE);
      expect(r.stdout).toMatch(/^Usage: tollbooth-bridge <url> \[options\]\n/);
      expect(r.stdout).toContain("  --max-difficulty <bits>  hardest challenge to solve, leading zero bits (default 24)\n");
    });
  }
});
