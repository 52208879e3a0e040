/**
 * `npm run check:functions` (scripts/check-function-length.ts) on fixtures in a temporary
 * directory: a body of 101 lines fails, 100 passes, for every kind of function it counts
 * (declaration, arrow, function expression, method, accessor, constructor), and a factory is
 * measured whole even when each closure it returns is short. The command's exit code and
 * report are read from a real `node` run.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { longFunctions } from "../../../scripts/check-function-length.ts";

const SCRIPT = fileURLToPath(new URL("../../../scripts/check-function-length.ts", import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `n - 2` statements: with the opening and closing lines, a body spanning exactly `n` lines. */
const filler = (n: number, indent = "  ") => Array.from({ length: n - 2 }, (_, i) => `${indent}void ${i};`).join("\n");

/** `function <name>() {` … `}`: a body of exactly `n` lines, starting on the declaration's line. */
const declaration = (name: string, n: number) => `export function ${name}() {\n${filler(n)}\n}\n`;

function run(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { cwd, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function fixture(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "tollbooth-fnlen-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

describe("longFunctions", () => {
  it("a 101-line body is over the limit, a 100-line body is not", () => {
    const text = declaration("hundred", 100) + declaration("hundredAndOne", 101);
    expect(longFunctions("f.ts", text)).toEqual([{ file: "f.ts", line: 101, lines: 101, name: "hundredAndOne" }]);
  });

  it("counts arrows, function expressions, methods, accessors and constructors, named by where they are", () => {
    const body = filler(101, "    ");
    const text = [
      `export const arrow = () => {\n${filler(101)}\n};`,
      `export const expression = function () {\n${filler(101)}\n};`,
      `export class Store {`,
      `  constructor() {\n${body}\n  }`,
      `  method() {\n${body}\n  }`,
      `  get size() {\n${body}\n  }`,
      `  short() {\n${filler(100, "    ")}\n  }`,
      `}`,
    ].join("\n");
    expect(longFunctions("g.ts", text).map((f) => [f.name, f.lines])).toEqual([
      ["arrow", 101],
      ["expression", 101],
      ["Store.constructor", 101],
      ["Store.method", 101],
      ["Store.get size", 101],
    ]);
  });

  it("measures a factory whole, though each closure it returns is short", () => {
    const closures = Array.from({ length: 25 }, (_, i) => `    m${i}() {\n      void ${i};\n      void ${i};\n    },`).join("\n");
    const text = `export function factory() {\n  return {\n${closures}\n  };\n}\n`;
    expect(longFunctions("h.ts", text)).toEqual([{ file: "h.ts", line: 1, lines: 104, name: "factory" }]);
  });

  it("takes another limit", () => {
    expect(longFunctions("i.ts", declaration("ten", 10), 9).map((f) => f.lines)).toEqual([10]);
    expect(longFunctions("i.ts", declaration("ten", 10), 10)).toEqual([]);
  });
});

describe("node scripts/check-function-length.ts", () => {
  it("exits 1 and names file:line, length and name when a body spans 101 lines", () => {
    const dir = fixture({ "src/ok.ts": declaration("hundred", 100), "src/deep/long.ts": `// a comment\n${declaration("tooLong", 101)}` });
    const r = run(["src"], dir);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(
      `${join("src", "deep", "long.ts")}:2  101 lines  tooLong\ncheck:functions: 1 function body over 100 lines in 2 files: split them\n`,
    );
  });

  it("exits 0 when every body spans 100 lines or fewer", () => {
    const dir = fixture({ "a.ts": declaration("hundred", 100), "b.d.ts": `export declare function x(): void;\n` });
    const r = run(["."], dir);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("check:functions: no function body over 100 lines in 1 file\n");
  });

  it("skips node_modules/, dist/ and declaration files", () => {
    const dir = fixture({
      "node_modules/x/index.ts": declaration("a", 200),
      "dist/index.ts": declaration("b", 200),
      "c.ts": "export {};\n",
    });
    expect(run(["."], dir)).toMatchObject({ status: 0, stdout: "check:functions: no function body over 100 lines in 1 file\n" });
  });

  it("refuses a bad --max and an unknown option with exit 2", () => {
    const dir = fixture({ "a.ts": declaration("hundred", 100) });
    expect(run(["--max", "ten", "."], dir)).toMatchObject({ status: 2, stdout: "" });
    expect(run(["--max", "ten", "."], dir).stderr).toContain('--max wants a whole number of lines ≥ 1, got "ten"');
    expect(run(["--fast", "."], dir)).toMatchObject({ status: 2, stdout: "" });
  });
});
