/**
 * Command line of `tollbooth-bridge`, parsed with `node:util` `parseArgs`:
 *
 *   tollbooth-bridge <url> [--header "Name: value"]... [--max-difficulty N] [--max-solve-ms MS]
 *                    [--pay <way>,… [the flags of the ways it names]]
 *                    [--allow-http] [--quiet | --verbose] [--help]
 *
 * The ways `--pay` takes are the client's payers; the flags of a way with options of its
 * own (wallet, signer, limits) come from its bridge payer (payers/).
 */
import { parseArgs } from "node:util";
import type { PayerName } from "../../tollbooth-client/src/index.ts";
import { PAYER_NAMES } from "../../tollbooth-client/src/payers/index.ts";
import { badArguments, type FlagValues, flagError, integerOption, LOOPBACK, stringFlag } from "./flags.ts";
import type { LogLevel } from "./log.ts";
import { BRIDGE_PAYERS, type BridgePayerArgs } from "./payers/index.ts";

/** `text` as lines of at most `width` characters, broken at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

/** Where option descriptions start in the usage text, and its width. */
const COLUMN = 27;
const WIDTH = 87;

/** One option of the usage text: its name, then its description wrapped in the description column. */
function usageLine(name: string, description: string): string {
  return `  ${name.padEnd(COLUMN - 2)}${wrap(description, WIDTH - COLUMN).join(`\n${" ".repeat(COLUMN)}`)}`;
}

/** Usage text (for `--help` on stdout). */
export const USAGE = `Usage: tollbooth-bridge <url> [options]

Speaks MCP over stdio to a local client and MCP Streamable HTTP to <url> (a tollbooth
gateway or any MCP server), solving tollbooth proof-of-work challenges on the way
${wrap(`(or, ${BRIDGE_PAYERS.map((p) => p.pitch).join(", and ")}, within the limits you set).`, WIDTH).join("\n")}
Logs go to stderr; stdout carries only the MCP protocol.

Options:
  --header "Name: value"   HTTP header sent on every request (repeatable), e.g.
                           --header "Authorization: Bearer \${TOKEN}"; \${VAR} is taken
                           from the environment
  --max-difficulty <bits>  hardest challenge to solve, leading zero bits (default 24)
  --max-solve-ms <ms>      time budget of one solve, milliseconds (default 60000)
${usageLine("--pay <list>", `ways through a 402 it may take, in order of preference, comma-separated: ${PAYER_NAMES.join(", ")} (default pow: proof of work only)`)}
${BRIDGE_PAYERS.map((p) => p.usage).join("")}  --allow-http             allow plain http:// to a host other than localhost
  --quiet                  log errors only
  --verbose                also log every relayed message
  -h, --help               show this help
`;

/**
 * What the command writes on stderr for a command line it cannot use (exit code 2): the
 * reason on one line (line breaks in it folded), then where the options are. Never the usage
 * text itself: it would bury the reason (`--help` prints it).
 */
export function argumentsError(message: string): string {
  return `tollbooth-bridge: ${message.replace(/\s*[\r\n]+\s*/g, " ")}\nSee tollbooth-bridge --help for the options.\n`;
}

/** What the command line asks for: the bridge's own arguments and each payer's (`BridgePayerArgs`). */
export interface BridgeArgs extends BridgePayerArgs {
  url: URL;
  headers: Record<string, string>;
  maxDifficulty: number | undefined;
  maxSolveMs: number | undefined;
  /** `--pay`, in order of preference; undefined when absent (the resolver's default, `["pow"]`). */
  pay: PayerName[] | undefined;
  logLevel: LogLevel;
}

/** RFC 9110 `token` (a field name). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The flags of the command line: the bridge's own, then each bridge payer's. */
const OPTIONS = {
  header: { type: "string", multiple: true },
  "max-difficulty": { type: "string" },
  "max-solve-ms": { type: "string" },
  pay: { type: "string" },
  ...Object.assign({}, ...BRIDGE_PAYERS.map((p) => p.flags)),
  "allow-http": { type: "boolean" },
  quiet: { type: "boolean" },
  verbose: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Parse `argv` (without the node and script paths).
 * @param env where `${VAR}` in header values is looked up (default `process.env`)
 * @returns `"help"` for `--help`, else the parsed arguments
 * @throws TollboothError `bad_arguments` (its message names the argument) on an unknown
 *   option, a missing or extra URL, a URL that is not http(s) (plain http only to localhost
 *   unless `--allow-http`), a header without `Name: value`, an unset `${VAR}`, a non-integer
 *   limit, `--quiet` with `--verbose`, a `--pay` list naming an unknown way (or one twice),
 *   `--pay` naming a way without a flag it requires, a flag of a way `--pay` does not name,
 *   or a value a way's flag cannot take (see each bridge payer: a file that cannot be read,
 *   a URL, network or address that is not one, a limit that is not a positive integer)
 */
export function parseBridgeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): BridgeArgs | "help" {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: OPTIONS });
  } catch (err) {
    throw flagError(err as Error & { code?: string }, Object.keys(OPTIONS));
  }
  const values = parsed.values as FlagValues;
  const { positionals } = parsed;
  if (values.help) return "help";
  if (positionals.length !== 1) {
    throw badArguments(
      positionals.length === 0
        ? "missing the MCP server URL"
        : `expected one URL, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(" ")}`,
    );
  }
  const url = URL.canParse(positionals[0]!) ? new URL(positionals[0]!) : undefined;
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw badArguments(`not an http(s) URL: ${JSON.stringify(positionals[0])}`);
  }
  if (url.protocol === "http:" && !LOOPBACK.has(url.hostname) && !values["allow-http"]) {
    throw badArguments(`refusing plain http to ${url.host} (headers would travel in clear); use https or --allow-http`);
  }
  if (values.quiet && values.verbose) throw badArguments("--quiet and --verbose exclude each other");
  const headers = headerList(values, env);
  const payFlag = stringFlag(values, "pay");
  const pay = payFlag === undefined ? undefined : payList(payFlag);
  const payerArgs = payersArgs(values, payFlag, pay);
  return {
    url,
    headers,
    maxDifficulty: integerOption(stringFlag(values, "max-difficulty"), "--max-difficulty", 1, 256),
    maxSolveMs: integerOption(stringFlag(values, "max-solve-ms"), "--max-solve-ms", 1, 3_600_000),
    pay,
    ...payerArgs,
    logLevel: values.quiet ? "quiet" : values.verbose ? "verbose" : "info",
  };
}

/** `--header` values → `{ name: value }`, `${VAR}` expanded from `env`. */
function headerList(values: FlagValues, env: NodeJS.ProcessEnv): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const raw of (values.header ?? []) as string[]) {
    const colon = raw.indexOf(":");
    const name = colon === -1 ? "" : raw.slice(0, colon).trim();
    if (!FIELD_NAME.test(name)) throw badArguments(`--header must be "Name: value", got ${JSON.stringify(raw)}`);
    headers[name] = expandEnv(raw.slice(colon + 1).trim(), env);
  }
  return headers;
}

/**
 * Each bridge payer's arguments: parsed when `--pay` names it (its required flags present),
 * else `undefined` (and then none of its flags may be given).
 */
function payersArgs(values: FlagValues, payFlag: string | undefined, pay: PayerName[] | undefined): BridgePayerArgs {
  const out: Record<string, unknown> = {};
  for (const payer of BRIDGE_PAYERS) {
    if (pay?.includes(payer.name)) {
      for (const flag of payer.required) {
        if (values[flag] === undefined) throw badArguments(`--pay ${payFlag} needs --${flag}`);
      }
      out[payer.key] = payer.parse(values, { allowHttp: values["allow-http"] === true });
    } else {
      const stray = Object.keys(payer.flags).find((flag) => values[flag] !== undefined);
      if (stray) throw badArguments(`--${stray} is for paying over ${payer.over}: add --pay ${payer.name} (or --pay ${payer.name},pow)`);
      out[payer.key] = undefined;
    }
  }
  return out as unknown as BridgePayerArgs;
}

/** `--pay <name>,<name>` → the names, each a client payer's, none twice; anything else is `bad_arguments`. */
function payList(raw: string): PayerName[] {
  const names = raw.split(",").map((n) => n.trim().toLowerCase());
  const out: PayerName[] = [];
  const known = `${PAYER_NAMES.slice(0, -1).join(", ")} and ${PAYER_NAMES.at(-1)}`;
  for (const name of names) {
    if (!(PAYER_NAMES as readonly string[]).includes(name))
      throw badArguments(`--pay takes a comma-separated list of ${known}, got ${JSON.stringify(raw)}`);
    if (out.includes(name as PayerName)) throw badArguments(`--pay names ${name} twice: ${JSON.stringify(raw)}`);
    out.push(name as PayerName);
  }
  return out;
}

/** Replace each `${NAME}` by `env.NAME`; an unset variable is `bad_arguments`. */
function expandEnv(value: string, env: NodeJS.ProcessEnv): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined) throw badArguments(`--header uses \${${name}}, which is not set in the environment`);
    return v;
  });
}
