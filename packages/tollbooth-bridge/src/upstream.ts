/**
 * The HTTP side of a bridge: the Streamable HTTP transport (through `withTollbooth`) and the
 * session it carries, replaced when the session is lost.
 *
 * Session re-establishment (MCP 2025-06-18 / 2025-11-25 "Session Management"): a fresh
 * transport is started, the client's original `initialize` is sent on it under a
 * bridge-owned id (its response is swallowed: the client already has one), then
 * `notifications/initialized` if the client had sent it. Requests already in progress on
 * the lost session are answered with an error by the owner (`onSessionLost`): their stream
 * is gone. The bridge's own messages are retried on transient failures with backoff.
 */
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  isJSONRPCErrorResponse,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type JSONRPCRequest,
} from "@modelcontextprotocol/sdk/types.js";
import type { FetchLike } from "../../tollbooth-client/src/index.ts";
import { classifyFailure, describeFailure } from "./failures.ts";
import type { BridgeLog } from "./log.ts";

/** One HTTP transport and the session it carries; replaced when the session is re-established. */
export interface Link {
  transport: StreamableHTTPClientTransport;
  /** 1, 2, …: which session of this bridge. */
  generation: number;
}

/** What the HTTP side needs from the bridge. */
export interface UpstreamOptions {
  /** The remote MCP endpoint. */
  url: URL;
  /** Headers sent on every HTTP request. */
  headers: Record<string, string> | undefined;
  /** The resolver's fetch (`withTollbooth`). */
  fetch: FetchLike;
  log: BridgeLog;
  /** Attempts after a transient failure. */
  retries: number;
  /** First backoff delay, milliseconds (doubled each attempt, capped at `MAX_RETRY_DELAY_MS`). */
  retryDelayMs: number;
  /** Longest wait for the answer to a re-sent `initialize`, milliseconds. */
  reinitTimeoutMs: number;
  /** A message from the server on `link`. */
  onMessage(link: Link, message: JSONRPCMessage): void;
  /** The client's `initialize` (the last one), if it sent one. */
  initialize(): JSONRPCRequest | undefined;
  /** Whether the client sent `notifications/initialized` after it. */
  initializedSent(): boolean;
  /** The session of `old` (id `oldSession`) was replaced: answer what was in progress on it. */
  onSessionLost(old: Link, oldSession: string | undefined): void;
  /** Whether the bridge is closing. */
  closing(): boolean;
}

const DELETE_TIMEOUT_MS = 2_000;
/** Longest backoff delay, milliseconds. */
export const MAX_RETRY_DELAY_MS = 8_000;
const REINIT_ID_PREFIX = "tollbooth-bridge/reinit/";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The current HTTP link and its replacement. */
export class Upstream {
  /** The link new messages go on. */
  current!: Link;
  /** Set while a lost session is being replaced. */
  renewing: Promise<void> | undefined;
  private readonly options: UpstreamOptions;
  private reinitCount = 0;
  /** The bridge's own re-sent `initialize` requests, by id. */
  private readonly reinitWaiters = new Map<string, (message: JSONRPCMessage) => void>();
  /** Errors already handled by the code that awaited `send()` (not logged again from `onerror`). */
  private readonly handled = new WeakSet<object>();

  constructor(options: UpstreamOptions) {
    this.options = options;
  }

  /** Start the first link. */
  async start(): Promise<void> {
    this.current = this.newLink(1);
    await this.current.transport.start();
  }

  /** A new session for the client's second `initialize`: a new link (started), the old one closed. */
  replace(): Promise<void> {
    const old = this.current;
    this.current = this.newLink(old.generation + 1);
    const started = this.current.transport.start();
    void old.transport.close();
    return started;
  }

  /** `err` was handled by the code that awaited `send()`: `onerror` does not log it. */
  markHandled(err: unknown): void {
    if (typeof err === "object" && err !== null) this.handled.add(err);
  }

  /** Deliver an answer to one of the bridge's re-sent `initialize` requests; false when `message` is not one. */
  answersReinit(message: JSONRPCMessage): boolean {
    const id = "id" in message ? message.id : undefined;
    const waiter = typeof id === "string" ? this.reinitWaiters.get(id) : undefined;
    if (!waiter) return false;
    waiter(message);
    return true;
  }

  /** Replace `failed` by a new session (once, however many requests noticed the loss). */
  renew(failed: Link): Promise<void> {
    if (this.current !== failed) return this.renewing ?? Promise.resolve();
    const promise = this.reestablish(failed).finally(() => {
      if (this.renewing === promise) this.renewing = undefined;
    });
    this.renewing = promise;
    return promise;
  }

  /** `send` with the transient-failure retries (for the bridge's own messages). */
  async sendWithRetry(link: Link, message: JSONRPCMessage): Promise<void> {
    const { retries, retryDelayMs, log } = this.options;
    for (let attempt = 0; ; attempt++) {
      try {
        return await link.transport.send(message);
      } catch (err) {
        this.markHandled(err);
        if (this.options.closing() || attempt >= retries || classifyFailure(err, false) !== "transient") throw err;
        const delay = Math.min(retryDelayMs * 2 ** attempt, MAX_RETRY_DELAY_MS);
        log.info(`${describeFailure(err)}; retry ${attempt + 1}/${retries} in ${delay} ms`);
        await sleep(delay);
      }
    }
  }

  /** End the session (HTTP DELETE, at most 2 s) and close the transport; never throws. */
  async close(): Promise<void> {
    if (this.renewing) await Promise.race([this.renewing.catch(() => {}), sleep(DELETE_TIMEOUT_MS)]);
    const transport = this.current.transport;
    if (transport.sessionId) {
      // The SDK's terminateSession: HTTP DELETE with Mcp-Session-Id (405 accepted).
      await Promise.race([transport.terminateSession().catch(() => {}), sleep(DELETE_TIMEOUT_MS)]);
    }
    await transport.close().catch(() => {});
  }

  private newLink(generation: number): Link {
    const { url, headers, fetch, log } = this.options;
    const transport = new StreamableHTTPClientTransport(url, { fetch, requestInit: { headers: { ...headers } } });
    const link: Link = { transport, generation };
    transport.onmessage = (message) => this.options.onMessage(link, message);
    transport.onerror = (err) => {
      // send() reports its failure here and then throws it; the thrower handles those.
      setTimeout(() => {
        if (this.options.closing() || link !== this.current || (typeof err === "object" && err !== null && this.handled.has(err))) return;
        log.error(`session ${transport.sessionId ?? "(none)"}: ${describeFailure(err)}`);
      }, 0);
    };
    return link;
  }

  private async reestablish(old: Link): Promise<void> {
    const oldSession = old.transport.sessionId;
    const link = this.newLink(old.generation + 1);
    this.current = link;
    await link.transport.start();
    void old.transport.close(); // aborts its streams and pending reconnections
    this.options.onSessionLost(old, oldSession);
    await this.reinitialize(link, this.options.initialize()!);
    this.options.log.info(`session re-established: ${oldSession} → ${link.transport.sessionId ?? "(no session id)"}`);
  }

  /** Send the client's `initialize` (under a bridge-owned id) and, if it had, `notifications/initialized` on `link`. */
  private async reinitialize(link: Link, init: JSONRPCRequest): Promise<void> {
    const { reinitTimeoutMs } = this.options;
    const id = `${REINIT_ID_PREFIX}${++this.reinitCount}`;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answer = new Promise<JSONRPCMessage>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to initialize within ${reinitTimeoutMs} ms`)), reinitTimeoutMs);
      this.reinitWaiters.set(id, resolve);
    });
    answer.catch(() => {}); // awaited below unless the send fails first
    try {
      await this.sendWithRetry(link, { ...init, id });
      const response = await answer;
      if (isJSONRPCErrorResponse(response)) throw new Error(`the server refused initialize: ${response.error.message}`);
      const version = isJSONRPCResultResponse(response) ? (response.result as { protocolVersion?: unknown }).protocolVersion : undefined;
      if (typeof version === "string") link.transport.setProtocolVersion(version);
      if (this.options.initializedSent()) await this.sendWithRetry(link, { jsonrpc: "2.0", method: "notifications/initialized" });
    } finally {
      clearTimeout(timer);
      this.reinitWaiters.delete(id);
    }
  }
}
