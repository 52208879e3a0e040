/**
 * Command line of `tollbooth-bridge`, parsed with `node:util` `parseArgs`:
 *
 *   tollbooth-bridge <url> [--header "Name: value"]... [--max-difficulty N] [--max-solve-ms MS]
 *                    [--allow-http] [--quiet | --verbose] [--help]
 */
import { parseArgs } from "node:util";
import type { LogLevel } from "./log.ts";

/** Usage text (for `--help` on stdout, and on stderr after a bad argument). */
export const USAGE = `Usage: tollbooth-bridge <url> [options]

Speaks MCP over stdio to a local client and MCP Streamable HTTP to <url> (a tollbooth
gateway or any MCP server), solving tollbooth proof-of-work challenges on the way.
Logs go to stderr; stdout carries only the MCP protocol.

Options:
  --header "Name: value"   HTTP header sent on every request (repeatable), e.g.
                           --header "Authorization: Bearer \${TOKEN}"; \${VAR} is taken
                           from the environment
  --max-difficulty <bits>  hardest challenge to solve, leading zero bits (default 24)
  --max-solve-ms <ms>      time budget of one solve, milliseconds (default 60000)
  --allow-http             allow plain http:// to a host other than localhost
  --quiet                  log errors only
  --verbose                also log every relayed message
  -h, --help               show this help
`;

/** What the command line asks for. */
export interface BridgeArgs {
  url: URL;
  headers: Record<string, string>;
  maxDifficulty: number | undefined;
  maxSolveMs: number | undefined;
  logLevel: LogLevel;
}

/** A command line that cannot be used; its message says which argument and why. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** RFC 9110 `token` (a field name). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * Parse `argv` (without the node and script paths).
 * @param env where `${VAR}` in header values is looked up (default `process.env`)
 * @returns `"help"` for `--help`, else the parsed arguments
 * @throws UsageError on an unknown option, a missing or extra URL, a URL that is not
 *   http(s) (plain http only to localhost unless `--allow-http`), a header without
 *   `Name: value`, an unset `${VAR}`, a non-integer limit, or `--quiet` with `--verbose`
 */
export function parseBridgeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): BridgeArgs | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        header: { type: "string", multiple: true },
        "max-difficulty": { type: "string" },
        "max-solve-ms": { type: "string" },
        "allow-http": { type: "boolean" },
        quiet: { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? "missing the MCP server URL" : `expected one URL, got ${positionals.length}: ${positionals.join(" ")}`);
  }
  const url = URL.canParse(positionals[0]!) ? new URL(positionals[0]!) : undefined;
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw new UsageError(`not an http(s) URL: ${positionals[0]}`);
  }
  if (url.protocol === "http:" && !LOOPBACK.has(url.hostname) && !values["allow-http"]) {
    throw new UsageError(`refusing plain http to ${url.host} (headers would travel in clear); use https or --allow-http`);
  }
  if (values.quiet && values.verbose) throw new UsageError("--quiet and --verbose exclude each other");

  const headers: Record<string, string> = {};
  for (const raw of values.header ?? []) {
    const colon = raw.indexOf(":");
    const name = colon === -1 ? "" : raw.slice(0, colon).trim();
    if (!FIELD_NAME.test(name)) throw new UsageError(`--header must be "Name: value", got ${JSON.stringify(raw)}`);
    headers[name] = expandEnv(raw.slice(colon + 1).trim(), env);
  }
  return {
    url,
    headers,
    maxDifficulty: integerOption(values["max-difficulty"], "--max-difficulty", 1, 256),
    maxSolveMs: integerOption(values["max-solve-ms"], "--max-solve-ms", 1, 3_600_000),
    logLevel: values.quiet ? "quiet" : values.verbose ? "verbose" : "info",
  };
}

/** Replace each `${NAME}` by `env.NAME`; an unset variable is a UsageError. */
function expandEnv(value: string, env: NodeJS.ProcessEnv): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined) throw new UsageError(`--header uses \${${name}}, which is not set in the environment`);
    return v;
  });
}

/** `undefined` when absent; else an integer in [min, max] or a UsageError naming `flag`. */
function integerOption(raw: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return n;
}
