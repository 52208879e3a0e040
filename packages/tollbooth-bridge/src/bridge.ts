/**
 * The stdio bridge: MCP over stdio to a local client (Claude Desktop, Cursor, Claude Code)
 * ⇄ MCP Streamable HTTP to a tollbooth gateway, through `withTollbooth` so 402 challenges
 * are solved where the client cannot see them.
 *
 *   const bridge = await runBridge({ url: new URL("https://mcp.example.com/mcp") });
 *   await bridge.closed; // stdin closed, or bridge.close() was called
 *
 * It is a relay, not an MCP peer: every JSON-RPC message is passed through unchanged, both
 * ways, ids included — requests, responses, notifications (progress, cancellation, list
 * changes), and server-to-client requests (sampling, elicitation, roots/list) with their
 * answers. The SDK's `StdioServerTransport` and `StreamableHTTPClientTransport` are used as
 * raw transports; the HTTP transport opens the GET SSE stream after
 * `notifications/initialized` and resumes broken SSE streams with `Last-Event-ID` itself.
 * The bridge only reads what it must: the client's `initialize` (kept, to start a new
 * session) and its result's `protocolVersion` (sent as `MCP-Protocol-Version`). It speaks on
 * its own only to keep message order: a response that follows a progress notification is
 * written after a `ping` to the client was answered (to-client.ts).
 *
 * Session re-establishment (MCP 2025-06-18 / 2025-11-25 "Session Management"): when a
 * request carrying `Mcp-Session-Id` is answered 404 (or 400 naming the session, see
 * failures.ts), the bridge starts a fresh HTTP transport, sends the client's original
 * `initialize` (under a bridge-owned id; its response is swallowed, the client already has
 * one) and `notifications/initialized`, then retries the failed request (upstream.ts).
 * Requests already in progress on the lost session are answered with a JSON-RPC error
 * (their stream is gone). Transient connection failures are retried with exponential
 * backoff. When the bridge gives up, the pending request is answered with a JSON-RPC error
 * saying why (relay.ts).
 *
 * Files: this one assembles a bridge; relay.ts routes messages; upstream.ts is the HTTP
 * side; to-client.ts the stdout side; payers/ turns each paying way's options into
 * `withTollbooth`'s.
 */
import type { Readable, Writable } from "node:stream";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { type FetchLike, type PayerName, type WithTollboothOptions, withTollbooth } from "../../tollbooth-client/src/index.ts";
import { describeFailure } from "./failures.ts";
import { type BridgeLog, streamLog } from "./log.ts";
import { BRIDGE_PAYERS, type BridgePayerOptions } from "./payers/index.ts";
import { Relay } from "./relay.ts";
import { ClientWriter } from "./to-client.ts";
import { Upstream } from "./upstream.ts";

/** Options of {@link runBridge}: the bridge's own and each paying way's (`BridgePayerOptions`). */
export interface BridgeOptions extends BridgePayerOptions {
  /** The remote MCP endpoint (Streamable HTTP), e.g. `https://mcp.example.com/mcp`. */
  url: URL;
  /** Headers sent on every HTTP request (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** Most leading zero bits the resolver will solve (default 24, see `withTollbooth`). */
  maxDifficulty?: number | undefined;
  /** Time budget of one solve, milliseconds (default 60 000). */
  maxSolveMs?: number | undefined;
  /**
   * Ways through a 402, in order of preference (default `["pow"]`, see `withTollbooth`); a
   * paying way needs its own options (`BridgePayerOptions`).
   */
  pay?: PayerName[] | undefined;
  /** Attempts after a transient connection failure (default 5). */
  retries?: number;
  /** First backoff delay, milliseconds; doubled each attempt, capped at 8 000 (default 500). */
  retryDelayMs?: number;
  /** Longest wait for the answer to a re-sent `initialize`, milliseconds (default 30 000). */
  reinitTimeoutMs?: number;
  /** Where log lines go (default: stderr at level `info`). */
  log?: BridgeLog;
  /** The protocol side (default `process.stdin` / `process.stdout`). */
  stdin?: Readable;
  stdout?: Writable;
  /** The fetch under the resolver (default `globalThis.fetch`). */
  fetch?: FetchLike;
}

/** A running bridge. */
export interface BridgeHandle {
  /** Ends the session (HTTP DELETE, at most 2 s), closes both transports. Idempotent; never throws. */
  close(): Promise<void>;
  /** Resolves once the bridge has closed (stdin ended, stdout broke, or `close()`). */
  closed: Promise<void>;
}

/**
 * The resolver's fetch for `options`: its limits, each paying way's options (wallets and
 * signers built, payments logged), solves logged.
 * @throws TypeError for options a way cannot use, or that `withTollbooth` refuses
 */
function resolverFetch(options: BridgeOptions, log: BridgeLog): FetchLike {
  const resolverOptions: WithTollboothOptions = {
    maxDifficulty: options.maxDifficulty,
    maxSolveMs: options.maxSolveMs,
    pay: options.pay,
    onSolve: (e) => log.info(`solved challenge: ${e.difficulty} bits in ${Math.round(e.ms)} ms (${e.hashes} hashes)`),
  };
  // Each payer reads its own field of the options (`payer.key`).
  for (const payer of BRIDGE_PAYERS) Object.assign(resolverOptions, payer.resolverOptions(options[payer.key] as never, log));
  return withTollbooth(options.fetch, resolverOptions);
}

/**
 * Start relaying between stdio and the Streamable HTTP endpoint `options.url`.
 * Resolves once stdin is being read; nothing is sent upstream before the client's first message.
 * @throws TypeError (before anything starts) for `pay` naming a paying way without usable
 *   options of its own (e.g. a malformed private key);
 *   nothing else itself: failures are logged and answered to the client as JSON-RPC errors
 */
export async function runBridge(options: BridgeOptions): Promise<BridgeHandle> {
  const log = options.log ?? streamLog("info");
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;
  const fetch = resolverFetch(options, log);
  const stdio = new StdioServerTransport(stdin, stdout);
  let closing: Promise<void> | undefined;
  const isClosing = () => closing !== undefined;
  const client = new ClientWriter(stdio, log, isClosing);
  const retries = options.retries ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const relay = new Relay({ url: options.url, log, retries, retryDelayMs, closing: isClosing }, client);
  const upstream = new Upstream({
    url: options.url,
    headers: options.headers,
    fetch,
    log,
    retries,
    retryDelayMs,
    reinitTimeoutMs: options.reinitTimeoutMs ?? 30_000,
    onMessage: (link, message) => relay.fromServer(link, message),
    initialize: () => relay.initialize,
    initializedSent: () => relay.initializedSent,
    onSessionLost: (old, oldSession) => relay.sessionLost(old, oldSession),
    closing: isClosing,
  });
  relay.upstream = upstream;
  await upstream.start();

  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  function close(): Promise<void> {
    closing ??= (async () => {
      stdin.off("end", onEnd);
      stdin.off("close", onEnd);
      stdout.off("error", onStdoutError);
      client.releaseAll();
      await upstream.close();
      await stdio.close().catch(() => {});
      log.debug("closed");
      resolveClosed();
    })();
    return closing;
  }
  const onEnd = () => void close();
  const onStdoutError = (err: unknown) => {
    log.error(`stdout: ${describeFailure(err)}`);
    void close();
  };

  stdio.onmessage = (message) => relay.fromClient(message);
  stdio.onerror = (err) => log.error(`stdin: ${describeFailure(err)}`);
  stdin.once("end", onEnd);
  stdin.once("close", onEnd);
  stdout.on("error", onStdoutError);
  await stdio.start();
  return { close, closed };
}
