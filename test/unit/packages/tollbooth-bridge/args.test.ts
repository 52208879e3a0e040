/**
 * The bridge's command line (packages/tollbooth-bridge/src/args.ts, flags.ts): a command line
 * it cannot use is a `TollboothError` `bad_arguments` whose message is one line naming the
 * flag (a misspelt flag with the one it is nearest to), and `argumentsError` is what the
 * command writes for it: that line and a pointer to `--help`, never the usage text.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { argumentsError, parseBridgeArgs, USAGE } from "../../../../packages/tollbooth-bridge/src/args.ts";
import { nearest } from "../../../../packages/tollbooth-bridge/src/flags.ts";
import { TollboothError } from "../../../../packages/tollbooth-client/src/index.ts";

const URL_ARG = "https://mcp.example.com/mcp";

/** The `bad_arguments` message `parseBridgeArgs(argv)` throws. */
function refusal(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parseBridgeArgs(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(TollboothError);
    expect((err as TollboothError).code).toBe("bad_arguments");
    return (err as Error).message;
  }
  throw new Error(`parseBridgeArgs accepted ${JSON.stringify(argv)}`);
}

describe("a flag parseArgs refuses is named in one line", () => {
  it.each([
    [[URL_ARG, "--max-dificulty", "3"], "unknown option --max-dificulty; did you mean --max-difficulty?"],
    [[URL_ARG, "--verbos"], "unknown option --verbos; did you mean --verbose?"],
    [[URL_ARG, "--headers", "a: b"], "unknown option --headers; did you mean --header?"],
    [[URL_ARG, "--allow_http"], "unknown option --allow_http; did you mean --allow-http?"],
    [[URL_ARG, "--pay", "l402", "--lnd-macaroon", "m"], "unknown option --lnd-macaroon; did you mean --lnd-macaroon-file?"],
    [[URL_ARG, "--bogus"], "unknown option --bogus"],
    [[URL_ARG, "-x"], "unknown option -x"],
    [[URL_ARG, "--pay"], "--pay needs a value"],
    [[URL_ARG, "--quiet=1"], "--quiet takes no value"],
    [[URL_ARG, "--pay", "--quiet"], '--pay needs a value (one that starts with "-" is written --pay=<value>)'],
  ])("%j → %s", (argv, message) => {
    expect(refusal(argv)).toBe(message);
  });
});

describe("every refusal is one line, and the command writes it with a pointer to --help only", () => {
  const dir = mkdtempSync(join(tmpdir(), "bridge-args-"));
  const emptyFile = join(dir, "empty");
  writeFileSync(emptyFile, "");
  const cases: string[][] = [
    [],
    [URL_ARG, "https://other.example.com/mcp"],
    ["https://a.example.com/\nmcp", "second"],
    ["ftp://mcp.example.com/"],
    ["http://mcp.example.com/mcp"],
    [URL_ARG, "--header", "no colon"],
    [URL_ARG, "--header", "Authorization: Bearer ${TB_UNSET}"],
    [URL_ARG, "--max-difficulty", "0"],
    [URL_ARG, "--max-solve-ms", "1e3"],
    [URL_ARG, "--quiet", "--verbose"],
    [URL_ARG, "--pay", "pow,lightning"],
    [URL_ARG, "--pay", "pow,pow"],
    [URL_ARG, "--pay", "l402"],
    [URL_ARG, "--lnd-url", "https://lnd.example.com"],
    [URL_ARG, "--pay", "l402", "--lnd-url", "https://lnd.example.com", "--lnd-macaroon-file", emptyFile, "--max-sats-per-hour", "10"],
    [
      URL_ARG,
      "--pay",
      "x402",
      "--evm-key-file",
      emptyFile,
      "--x402-network",
      "eip155:8453",
      "--x402-asset",
      `0x${"ab".repeat(20)}`,
      "--max-x402-per-hour",
      "1",
    ],
    [URL_ARG, "--max-difficulty"],
  ];
  it.each(cases.map((argv) => [argv]))("%j", (argv) => {
    const message = refusal(argv);
    expect(message).not.toMatch(/[\r\n]/);
    const written = argumentsError(message);
    expect(written).toBe(`tollbooth-bridge: ${message}\nSee tollbooth-bridge --help for the options.\n`);
    expect(written).not.toContain("Usage:");
    expect(written).not.toContain(USAGE.split("\n")[0]!);
  });

  it("argumentsError folds a line break inside a reason into one line", () => {
    expect(argumentsError("first\n  second\r\nthird")).toBe(
      "tollbooth-bridge: first second third\nSee tollbooth-bridge --help for the options.\n",
    );
  });
});

describe("nearest (the flag a typo means)", () => {
  const flags = ["header", "max-difficulty", "max-solve-ms", "pay", "lnd-url", "lnd-macaroon-file", "quiet", "verbose", "help"];
  it("the only flag a word begins, or one within a third of its length in edits", () => {
    expect(nearest("lnd-mac", flags)).toBe("lnd-macaroon-file");
    expect(nearest("max-solve-sm", flags)).toBe("max-solve-ms");
    expect(nearest("qiuet", flags)).toBe("quiet");
  });
  it("nothing for a word near no flag, or beginning several", () => {
    expect(nearest("max", flags)).toBeUndefined();
    expect(nearest("frobnicate", flags)).toBeUndefined();
    expect(nearest("ph", flags)).toBeUndefined();
  });
});
