/**
 * Command line of `tollbooth-bridge`, parsed with `node:util` `parseArgs`:
 *
 *   tollbooth-bridge <url> [--header "Name: value"]... [--max-difficulty N] [--max-solve-ms MS]
 *                    [--pay l402,pow --lnd-url URL --lnd-macaroon-file PATH
 *                     --max-sats-per-hour N [--max-sats-per-request N]]
 *                    [--allow-http] [--quiet | --verbose] [--help]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { LogLevel } from "./log.ts";

/** Usage text (for `--help` on stdout, and on stderr after a bad argument). */
export const USAGE = `Usage: tollbooth-bridge <url> [options]

Speaks MCP over stdio to a local client and MCP Streamable HTTP to <url> (a tollbooth
gateway or any MCP server), solving tollbooth proof-of-work challenges on the way
(or, with --pay l402, paying Lightning invoices within the limits you set).
Logs go to stderr; stdout carries only the MCP protocol.

Options:
  --header "Name: value"   HTTP header sent on every request (repeatable), e.g.
                           --header "Authorization: Bearer \${TOKEN}"; \${VAR} is taken
                           from the environment
  --max-difficulty <bits>  hardest challenge to solve, leading zero bits (default 24)
  --max-solve-ms <ms>      time budget of one solve, milliseconds (default 60000)
  --pay <list>             ways through a 402 it may take, in order of preference,
                           comma-separated: pow, l402 (default pow: proof of work only)
  --lnd-url <url>          with l402: the paying LND node's REST URL, e.g.
                           https://127.0.0.1:8080
  --lnd-macaroon-file <path>
                           with l402: a macaroon of that node allowed to pay
                           (admin.macaroon, binary or hex)
  --max-sats-per-hour <n>  with l402: most satoshis paid in any hour (required)
  --max-sats-per-request <n>
                           with l402: most satoshis one invoice may ask (default
                           --max-sats-per-hour); dearer invoices are not paid
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
  /** `--pay`, in order of preference; undefined when absent (the resolver's default, `["pow"]`). */
  pay: Array<"pow" | "l402"> | undefined;
  /** Set when `pay` includes `l402`: the LND node and the spending limits (satoshis). */
  lightning: BridgeLightningArgs | undefined;
  logLevel: LogLevel;
}

/** The Lightning part of the command line (`--pay` with `l402`). */
export interface BridgeLightningArgs {
  /** `--lnd-url`: the paying LND node's REST base URL. */
  lndUrl: URL;
  /** `--lnd-macaroon-file`, read and given as hex (a binary file is hex-encoded). */
  macaroonHex: string;
  /** `--max-sats-per-request` (default `maxSatsPerHour`). */
  maxSatsPerRequest: number;
  /** `--max-sats-per-hour`. */
  maxSatsPerHour: number;
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
 *   `Name: value`, an unset `${VAR}`, a non-integer limit, `--quiet` with `--verbose`,
 *   a `--pay` list naming something other than `pow` / `l402` (or one twice), `--pay` with
 *   `l402` missing `--lnd-url`, `--lnd-macaroon-file` or `--max-sats-per-hour` (the message
 *   names the flag), a macaroon file that cannot be read or is empty, or a Lightning flag
 *   without `l402` in `--pay`
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
        pay: { type: "string" },
        "lnd-url": { type: "string" },
        "lnd-macaroon-file": { type: "string" },
        "max-sats-per-request": { type: "string" },
        "max-sats-per-hour": { type: "string" },
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
  const pay = values.pay === undefined ? undefined : payList(values.pay);
  const lightningFlags = ["lnd-url", "lnd-macaroon-file", "max-sats-per-request", "max-sats-per-hour"] as const;
  let lightning: BridgeLightningArgs | undefined;
  if (pay?.includes("l402")) {
    for (const flag of ["lnd-url", "lnd-macaroon-file", "max-sats-per-hour"] as const) {
      if (values[flag] === undefined) throw new UsageError(`--pay ${values.pay} needs --${flag}`);
    }
    const lndUrl = URL.canParse(values["lnd-url"]!) ? new URL(values["lnd-url"]!) : undefined;
    if (!lndUrl || (lndUrl.protocol !== "https:" && lndUrl.protocol !== "http:")) throw new UsageError(`--lnd-url is not an http(s) URL: ${values["lnd-url"]}`);
    if (lndUrl.protocol === "http:" && !LOOPBACK.has(lndUrl.hostname) && !values["allow-http"]) {
      throw new UsageError(`refusing plain http to the LND node ${lndUrl.host} (its macaroon would travel in clear); use https or --allow-http`);
    }
    const maxSatsPerHour = integerOption(values["max-sats-per-hour"], "--max-sats-per-hour", 1, 21e14)!;
    lightning = {
      lndUrl,
      macaroonHex: readMacaroonHex(values["lnd-macaroon-file"]!),
      maxSatsPerHour,
      maxSatsPerRequest: integerOption(values["max-sats-per-request"], "--max-sats-per-request", 1, 21e14) ?? maxSatsPerHour,
    };
  } else {
    const stray = lightningFlags.find((flag) => values[flag] !== undefined);
    if (stray) throw new UsageError(`--${stray} is for paying over Lightning: add --pay l402 (or --pay l402,pow)`);
  }
  return {
    url,
    headers,
    maxDifficulty: integerOption(values["max-difficulty"], "--max-difficulty", 1, 256),
    maxSolveMs: integerOption(values["max-solve-ms"], "--max-solve-ms", 1, 3_600_000),
    pay,
    lightning,
    logLevel: values.quiet ? "quiet" : values.verbose ? "verbose" : "info",
  };
}

/** `--pay pow,l402` → `["pow", "l402"]`; anything else is a UsageError. */
function payList(raw: string): Array<"pow" | "l402"> {
  const names = raw.split(",").map((n) => n.trim().toLowerCase());
  const out: Array<"pow" | "l402"> = [];
  for (const name of names) {
    if (name !== "pow" && name !== "l402") throw new UsageError(`--pay takes a comma-separated list of pow and l402, got ${JSON.stringify(raw)}`);
    if (out.includes(name)) throw new UsageError(`--pay names ${name} twice: ${JSON.stringify(raw)}`);
    out.push(name);
  }
  return out;
}

/** The macaroon file as hex: a file of hex digits is taken as is, any other is binary and hex-encoded. */
function readMacaroonHex(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UsageError(`--lnd-macaroon-file: cannot read ${path}: ${(err as Error).message}`);
  }
  const text = bytes.toString("latin1").trim();
  if (/^(?:[0-9a-fA-F]{2})+$/.test(text)) return text.toLowerCase();
  if (bytes.length === 0 || text === "") throw new UsageError(`--lnd-macaroon-file: ${path} is empty`);
  return bytes.toString("hex");
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
