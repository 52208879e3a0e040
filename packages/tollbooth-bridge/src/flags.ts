/**
 * Reading the values of `tollbooth-bridge`'s command-line flags (args.ts and each payer's
 * flags, payers/): one error for a command line that cannot be used, and the checks the
 * flags share (integers, atomic units, repeatable lists, plain http).
 */
import { TollboothError } from "../../tollbooth-client/src/index.ts";

/** The values `node:util` `parseArgs` read, by flag name (without `--`). */
export type FlagValues = { [flag: string]: string | boolean | (string | boolean)[] | undefined };

/** Hosts plain http may go to without `--allow-http`. */
export const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** A command line that cannot be used: `TollboothError` `bad_arguments`, its message saying which argument and why. */
export function badArguments(message: string): TollboothError {
  return new TollboothError("bad_arguments", message);
}

/**
 * `parseArgs`'s error as one line naming the flag: `unknown option --max-dificulty; did you
 * mean --max-difficulty?` (the nearest of `known`, flag names without `--`), `--pay needs a
 * value`, `--quiet takes no value`; any other, its first line.
 */
export function flagError(err: Error & { code?: string }, known: readonly string[]): TollboothError {
  const flag = /'(-{1,2}[^' <]+)/.exec(err.message)?.[1];
  if (flag === undefined) return badArguments(err.message.split("\n")[0]!);
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const near = flag.startsWith("--") ? nearest(flag.slice(2), known) : undefined;
    return badArguments(`unknown option ${flag}${near === undefined ? "" : `; did you mean --${near}?`}`);
  }
  if (/does not take an argument/.test(err.message)) return badArguments(`${flag} takes no value`);
  if (/is ambiguous/.test(err.message)) return badArguments(`${flag} needs a value (one that starts with "-" is written ${flag}=<value>)`);
  if (/argument missing/.test(err.message)) return badArguments(`${flag} needs a value`);
  return badArguments(err.message.split("\n")[0]!);
}

/**
 * The one of `names` that `word` most likely means: the only one it begins, else the one
 * the fewest single-character edits away (insert, delete, replace, swap two neighbours), at
 * most a third of the word's length (at least 1); undefined when none is that near.
 */
export function nearest(word: string, names: readonly string[]): string | undefined {
  const extended = names.filter((name) => name.startsWith(word));
  if (word.length >= 3 && extended.length === 1) return extended[0];
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const name of names) {
    const d = editDistance(word.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/** Optimal string alignment distance between `a` and `b` (Levenshtein, plus swaps of neighbours). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** A string flag's value (`undefined` when absent). */
export function stringFlag(values: FlagValues, flag: string): string | undefined {
  const value = values[flag];
  return typeof value === "string" ? value : undefined;
}

/** A repeatable flag's values, whose values may also be comma-separated: trimmed, empty parts dropped, repeats dropped. */
export function listFlag(values: FlagValues, flag: string): string[] {
  const raw = values[flag];
  const out: string[] = [];
  for (const part of (Array.isArray(raw) ? raw : []).flatMap((r) => String(r).split(","))) {
    const value = part.trim();
    if (value !== "" && !out.includes(value)) out.push(value);
  }
  return out;
}

/** `undefined` when absent; else an integer in [min, max], or `bad_arguments` naming `flag`. */
export function integerOption(raw: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw badArguments(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return n;
}

/** `undefined` when absent; else a positive integer of atomic units (as bigint), or `bad_arguments` naming `flag`. */
export function atomicOption(raw: string | undefined, flag: string): bigint | undefined {
  if (raw === undefined) return undefined;
  const n = /^[0-9]+$/.test(raw) ? BigInt(raw) : 0n;
  if (n <= 0n) throw badArguments(`${flag} must be a positive integer of atomic units, got ${JSON.stringify(raw)}`);
  return n;
}
