/**
 * The bridge's log: one line per event, on stderr only (stdout carries the MCP protocol).
 *
 *   [tollbooth-bridge] solved challenge: 12 bits in 41 ms (5123 hashes)
 *
 * Levels: `quiet` prints errors only; `info` (default) adds solved challenges,
 * re-established sessions and retries; `verbose` adds every relayed message.
 */
import type { Writable } from "node:stream";

/** How much the bridge writes to stderr. */
export type LogLevel = "quiet" | "info" | "verbose";

/** Where the bridge's log lines go. Each call writes one line. */
export interface BridgeLog {
  /** Errors: always written. */
  error(line: string): void;
  /** Solves, re-established sessions, retries: written at `info` and `verbose`. */
  info(line: string): void;
  /** Each relayed message: written at `verbose` only. */
  debug(line: string): void;
}

const PREFIX = "[tollbooth-bridge]";

/**
 * A `BridgeLog` writing `[tollbooth-bridge] <line>\n` to `stream` (default `process.stderr`).
 * Newlines inside a line are replaced by spaces, so one event is one line.
 */
export function streamLog(level: LogLevel, stream: Writable = process.stderr): BridgeLog {
  const write = (line: string) => {
    stream.write(`${PREFIX} ${line.replace(/\r?\n/g, " ")}\n`);
  };
  return {
    error: (line) => write(`error: ${line}`),
    info: (line) => (level === "quiet" ? undefined : write(line)),
    debug: (line) => (level === "verbose" ? write(line) : undefined),
  };
}
