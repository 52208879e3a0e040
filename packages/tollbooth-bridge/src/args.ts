/**
 * Command line of `tollbooth-bridge`, parsed with `node:util` `parseArgs`:
 *
 *   tollbooth-bridge <url> [--header "Name: value"]... [--max-difficulty N] [--max-solve-ms MS]
 *                    [--pay l402,pow --lnd-url URL --lnd-macaroon-file PATH
 *                     --max-sats-per-hour N [--max-sats-per-request N]]
 *                    [--pay x402,pow --evm-key-file PATH --x402-network CAIP2...
 *                     --x402-asset ADDRESS... --max-x402-per-hour N [--max-x402-per-request N]]
 *                    [--allow-http] [--quiet | --verbose] [--help]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { LogLevel } from "./log.ts";

/** Usage text (for `--help` on stdout, and on stderr after a bad argument). */
export const USAGE = `Usage: tollbooth-bridge <url> [options]

Speaks MCP over stdio to a local client and MCP Streamable HTTP to <url> (a tollbooth
gateway or any MCP server), solving tollbooth proof-of-work challenges on the way
(or, with --pay l402, paying Lightning invoices, and with --pay x402, paying USDC over
x402, within the limits you set).
Logs go to stderr; stdout carries only the MCP protocol.

Options:
  --header "Name: value"   HTTP header sent on every request (repeatable), e.g.
                           --header "Authorization: Bearer \${TOKEN}"; \${VAR} is taken
                           from the environment
  --max-difficulty <bits>  hardest challenge to solve, leading zero bits (default 24)
  --max-solve-ms <ms>      time budget of one solve, milliseconds (default 60000)
  --pay <list>             ways through a 402 it may take, in order of preference,
                           comma-separated: pow, l402, x402 (default pow: proof of work
                           only)
  --lnd-url <url>          with l402: the paying LND node's REST URL, e.g.
                           https://127.0.0.1:8080
  --lnd-macaroon-file <path>
                           with l402: a macaroon of that node allowed to pay
                           (admin.macaroon, binary or hex)
  --max-sats-per-hour <n>  with l402: most satoshis paid in any hour (required)
  --max-sats-per-request <n>
                           with l402: most satoshis one invoice may ask (default
                           --max-sats-per-hour); dearer invoices are not paid
  --evm-key-file <path>    with x402: a file holding the paying account's private key
                           (0x + 64 hex); keep it readable by you only
  --x402-network <caip2>   with x402: a network it may pay on, e.g. eip155:8453
                           (repeatable, or comma-separated; required)
  --x402-asset <address>   with x402: a token contract it may pay in, e.g. Base USDC
                           0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 (repeatable, or
                           comma-separated; required)
  --max-x402-per-hour <n>  with x402: most atomic units of an asset signed for in any
                           hour (required; 1000000 = 1 USDC)
  --max-x402-per-request <n>
                           with x402: most atomic units one payment may ask (default
                           --max-x402-per-hour); dearer offers are not paid
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
  pay: PayName[] | undefined;
  /** Set when `pay` includes `l402`: the LND node and the spending limits (satoshis). */
  lightning: BridgeLightningArgs | undefined;
  /** Set when `pay` includes `x402`: the paying key, what it may pay in, the limits (atomic units). */
  x402: BridgeX402Args | undefined;
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

/** The x402 part of the command line (`--pay` with `x402`). */
export interface BridgeX402Args {
  /** `--evm-key-file`, read: the private key, `0x` + 64 lowercase hex. */
  privateKey: `0x${string}`;
  /** `--x402-network`, CAIP-2 (`eip155:<chain id>`), in order given, without repeats. */
  networks: string[];
  /** `--x402-asset`, token addresses (`0x` + 40 hex), as given. */
  assets: string[];
  /** `--max-x402-per-request` (default `maxPerHour`). */
  maxPerRequest: bigint;
  /** `--max-x402-per-hour`. */
  maxPerHour: bigint;
}

/** Ways through a 402 the bridge may take (`--pay`). */
export type PayName = "pow" | "l402" | "x402";
const PAY_NAMES: readonly PayName[] = ["pow", "l402", "x402"];

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
 *   without `l402` in `--pay`; `--pay` with `x402` missing `--evm-key-file`,
 *   `--x402-network`, `--x402-asset` or `--max-x402-per-hour` (the message names the flag),
 *   a key file that cannot be read or holds no 0x private key, a network that is not
 *   `eip155:<chain id>`, an asset that is not an address, a limit that is not a positive
 *   integer, or an x402 flag without `x402` in `--pay`
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
        "evm-key-file": { type: "string" },
        "x402-network": { type: "string", multiple: true },
        "x402-asset": { type: "string", multiple: true },
        "max-x402-per-request": { type: "string" },
        "max-x402-per-hour": { type: "string" },
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
  const x402Flags = ["evm-key-file", "x402-network", "x402-asset", "max-x402-per-request", "max-x402-per-hour"] as const;
  let x402: BridgeX402Args | undefined;
  if (pay?.includes("x402")) {
    for (const flag of ["evm-key-file", "x402-network", "x402-asset", "max-x402-per-hour"] as const) {
      if (values[flag] === undefined) throw new UsageError(`--pay ${values.pay} needs --${flag}`);
    }
    const networks = listOption(values["x402-network"]!);
    const badNetwork = networks.find((n) => !/^eip155:[0-9]+$/.test(n));
    if (networks.length === 0 || badNetwork !== undefined) throw new UsageError(`--x402-network takes CAIP-2 EVM networks (eip155:<chain id>), got ${JSON.stringify(badNetwork ?? "")}`);
    const assets = listOption(values["x402-asset"]!);
    const badAsset = assets.find((a) => !/^0x[0-9a-fA-F]{40}$/.test(a));
    if (assets.length === 0 || badAsset !== undefined) throw new UsageError(`--x402-asset takes token addresses (0x + 40 hex), got ${JSON.stringify(badAsset ?? "")}`);
    const maxPerHour = atomicOption(values["max-x402-per-hour"], "--max-x402-per-hour")!;
    x402 = {
      privateKey: readEvmKey(values["evm-key-file"]!),
      networks,
      assets,
      maxPerHour,
      maxPerRequest: atomicOption(values["max-x402-per-request"], "--max-x402-per-request") ?? maxPerHour,
    };
  } else {
    const stray = x402Flags.find((flag) => values[flag] !== undefined);
    if (stray) throw new UsageError(`--${stray} is for paying over x402: add --pay x402 (or --pay x402,pow)`);
  }
  return {
    url,
    headers,
    maxDifficulty: integerOption(values["max-difficulty"], "--max-difficulty", 1, 256),
    maxSolveMs: integerOption(values["max-solve-ms"], "--max-solve-ms", 1, 3_600_000),
    pay,
    lightning,
    x402,
    logLevel: values.quiet ? "quiet" : values.verbose ? "verbose" : "info",
  };
}

/** `--pay pow,l402` → `["pow", "l402"]`; anything else is a UsageError. */
function payList(raw: string): PayName[] {
  const names = raw.split(",").map((n) => n.trim().toLowerCase());
  const out: PayName[] = [];
  for (const name of names) {
    if (!(PAY_NAMES as readonly string[]).includes(name)) throw new UsageError(`--pay takes a comma-separated list of pow, l402 and x402, got ${JSON.stringify(raw)}`);
    if (out.includes(name as PayName)) throw new UsageError(`--pay names ${name} twice: ${JSON.stringify(raw)}`);
    out.push(name as PayName);
  }
  return out;
}

/** A repeatable flag whose values may also be comma-separated: trimmed, empty parts dropped, repeats dropped. */
function listOption(raw: string[]): string[] {
  const out: string[] = [];
  for (const part of raw.flatMap((r) => r.split(","))) {
    const value = part.trim();
    if (value !== "" && !out.includes(value)) out.push(value);
  }
  return out;
}

/** `undefined` when absent; else a positive integer of atomic units (as bigint) or a UsageError naming `flag`. */
function atomicOption(raw: string | undefined, flag: string): bigint | undefined {
  if (raw === undefined) return undefined;
  const n = /^[0-9]+$/.test(raw) ? BigInt(raw) : 0n;
  if (n <= 0n) throw new UsageError(`${flag} must be a positive integer of atomic units, got ${JSON.stringify(raw)}`);
  return n;
}

/** The private key in `path`: `0x` + 64 hex (the `0x` may be left out), whitespace around it ignored. Never echoed. */
function readEvmKey(path: string): `0x${string}` {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new UsageError(`--evm-key-file: cannot read ${path}: ${(err as Error).message}`);
  }
  const hex = text.startsWith("0x") || text.startsWith("0X") ? text.slice(2) : text;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new UsageError(`--evm-key-file: ${path} does not hold a private key (0x + 64 hex)`);
  return `0x${hex.toLowerCase()}`;
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
