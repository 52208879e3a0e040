/**
 * Writing to the local client (stdout) in order. A client must handle a progress
 * notification before it reads the response to that call: the MCP SDK's `Protocol` handles a
 * notification one microtask later but a response at once, and the response removes the
 * call's progress handler; so when the last progress and the response reach the client in
 * the same stdout chunk (they reach the bridge together, and two back-to-back writes share
 * a pipe read), that progress is dropped ("unknown token"). Before writing a response that
 * follows a progress notification, the bridge therefore sends the client a `ping` (MCP
 * "Ping": either side may send one) and writes the response only after the client answered
 * it (or after `PING_BARRIER_MS`): a client answers a request only after handling what it
 * read before.
 */
import type { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
} from "@modelcontextprotocol/sdk/types.js";
import { describeFailure } from "./failures.ts";
import type { BridgeLog } from "./log.ts";

const PING_ID_PREFIX = "bridge-ping/";
/** Longest a response waits behind a ping barrier, milliseconds. */
const PING_BARRIER_MS = 500;

/** The stdout side of a bridge: ordered writes, and its own pings to the client. */
export class ClientWriter {
  private readonly stdio: StdioServerTransport;
  private readonly log: BridgeLog;
  /** Whether the bridge is closing (no new ping barrier then). */
  private readonly closing: () => boolean;
  /** Set while a ping barrier holds stdout writes back: the last queued write. */
  private outbox: Promise<void> | undefined;
  /** A `notifications/progress` was queued for stdout since the last barrier. */
  private progressQueued = false;
  private pingCount = 0;
  /** The bridge's own pings to the client awaiting their answer, by id. */
  private readonly pingWaiters = new Map<string, () => void>();

  constructor(stdio: StdioServerTransport, log: BridgeLog, closing: () => boolean) {
    this.stdio = stdio;
    this.log = log;
    this.closing = closing;
  }

  /** Write one message now (a failure is logged). */
  write(message: JSONRPCMessage): void {
    void this.stdio.send(message).catch((err: unknown) => this.log.error(`writing to stdout: ${describeFailure(err)}`));
  }

  /**
   * Relay one message to the client. Stdout writes keep arrival order (a message queued
   * behind a barrier waits for it, and so does everything after it).
   */
  send(message: JSONRPCMessage): void {
    const isResponse = isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message);
    const barrier = isResponse && this.progressQueued;
    if (barrier) this.progressQueued = false;
    else if (isJSONRPCNotification(message) && message.method === "notifications/progress") this.progressQueued = true;
    if (!barrier && !this.outbox) {
      this.write(message);
      return;
    }
    const next = (this.outbox ?? Promise.resolve()).then(async () => {
      if (barrier && !this.closing()) await this.ping();
      this.write(message);
    });
    this.outbox = next;
    void next.finally(() => {
      if (this.outbox === next) this.outbox = undefined;
    });
  }

  /** A message from the client with this `id` answers one of the bridge's pings: release its barrier; false when it does not. */
  answered(id: unknown): boolean {
    const pong = typeof id === "string" ? this.pingWaiters.get(id) : undefined;
    if (!pong) return false;
    pong();
    return true;
  }

  /** Release every barrier (the bridge is closing). */
  releaseAll(): void {
    for (const done of [...this.pingWaiters.values()]) done();
  }

  /** Ping the client; resolves on its answer (result or error), after `PING_BARRIER_MS`, or on close. */
  private ping(): Promise<void> {
    const id = `${PING_ID_PREFIX}${++this.pingCount}`;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.pingWaiters.delete(id);
        resolve();
      };
      const timer = setTimeout(() => {
        this.log.debug(`no answer to ping ${id} within ${PING_BARRIER_MS} ms; writing on`);
        done();
      }, PING_BARRIER_MS);
      this.pingWaiters.set(id, done);
      this.write({ jsonrpc: "2.0", id, method: "ping" });
    });
  }
}
