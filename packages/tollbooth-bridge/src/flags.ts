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
