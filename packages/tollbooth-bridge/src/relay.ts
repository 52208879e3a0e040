/**
 * The relay between the local client (stdio, to-client.ts) and the server (HTTP,
 * upstream.ts): every JSON-RPC message passed through unchanged, both ways. It remembers
 * only what it must: the client's requests not answered yet, its `initialize` (to start a
 * new session) and whether it sent `notifications/initialized`, and the protocol version
 * the server answered (sent as `MCP-Protocol-Version`). A client message that fails to go
 * upstream is retried on transient failures with backoff; a lost session is re-established
 * once and the request retried; on giving up, the request is answered with a JSON-RPC error
 * saying why.
 */
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type JSONRPCRequest,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { classifyFailure, describeFailure, errorResponse } from "./failures.ts";
import type { BridgeLog } from "./log.ts";
import type { ClientWriter } from "./to-client.ts";
import { type Link, MAX_RETRY_DELAY_MS, sleep, type Upstream } from "./upstream.ts";

/** A client request not answered yet. */
interface Pending {
  id: RequestId;
  /** The link it was last sent on, and whether that send completed (then its answer streams on that link). */
  link: Link | undefined;
  sent: boolean;
}

const idKey = (id: RequestId) => `${typeof id}:${id}`;

/** What a relay works with. */
export interface RelayOptions {
  url: URL;
  log: BridgeLog;
  /** Attempts after a transient failure. */
  retries: number;
  /** First backoff delay, milliseconds. */
  retryDelayMs: number;
  /** Whether the bridge is closing. */
  closing(): boolean;
}

/** Routes messages between the client and the server (see the module comment). */
export class Relay {
  /** The client's `initialize` (the last one), if it sent one. */
  initialize: JSONRPCRequest | undefined;
  /** Whether the client sent `notifications/initialized` after it. */
  initializedSent = false;
  upstream!: Upstream;
  private readonly options: RelayOptions;
  private readonly client: ClientWriter;
  /** Client requests awaiting an answer, by `idKey`. */
  private readonly pending = new Map<string, Pending>();

  constructor(options: RelayOptions, client: ClientWriter) {
    this.options = options;
    this.client = client;
  }

  /** A message from the server (any link): swallow re-init answers, relay the rest. */
  fromServer(link: Link, message: JSONRPCMessage): void {
    const { log } = this.options;
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      if (this.upstream.answersReinit(message)) return;
      const id = message.id;
      if (id === undefined || !this.pending.delete(idKey(id))) {
        log.debug(`dropped a response for no pending request (id ${JSON.stringify(id)})`);
        return;
      }
      if (this.initialize && id === this.initialize.id && isJSONRPCResultResponse(message)) {
        const version = (message.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof version === "string") link.transport.setProtocolVersion(version);
      }
      log.debug(`← response ${JSON.stringify(id)}`);
    } else {
      log.debug(`← ${"method" in message ? message.method : "message"}`);
    }
    this.client.send(message);
  }

  /** A message from the local client: note what must be remembered, then deliver it. */
  fromClient(message: JSONRPCMessage): void {
    const { log } = this.options;
    if (this.options.closing()) return;
    if (isJSONRPCRequest(message)) {
      this.pending.set(idKey(message.id), { id: message.id, link: undefined, sent: false });
      log.debug(`→ ${message.method} ${JSON.stringify(message.id)}`);
      if (message.method === "initialize") {
        this.initialize = message;
        this.initializedSent = false;
        if (this.upstream.current.transport.sessionId) {
          // A second initialize from the client: it wants a new session.
          void this.upstream.replace().then(() => this.deliver(message));
          return;
        }
      }
    } else if (isJSONRPCNotification(message)) {
      log.debug(`→ ${message.method}`);
      if (message.method === "notifications/initialized") this.initializedSent = true;
      if (message.method === "notifications/cancelled") {
        const requestId = (message.params as { requestId?: unknown } | undefined)?.requestId;
        if (typeof requestId === "string" || typeof requestId === "number") this.pending.delete(idKey(requestId));
      }
    } else {
      const id = "id" in message ? message.id : undefined;
      if (this.client.answered(id)) return; // the answer to the bridge's own ping: not the server's business
      log.debug(`→ response ${JSON.stringify(id ?? null)}`);
    }
    void this.deliver(message);
  }

  /** Answer request `id` with a JSON-RPC error saying why it failed (once; not if it was answered or cancelled). */
  answerWithError(id: RequestId, err: unknown): void {
    if (!this.pending.delete(idKey(id))) return;
    const response = errorResponse(id, err, this.options.url.href);
    this.options.log.error(`request ${JSON.stringify(id)} failed: ${response.error.message}`);
    this.client.send(response);
  }

  /** The session of `old` was replaced: answer the requests whose answer was streaming on it. */
  sessionLost(old: Link, oldSession: string | undefined): void {
    for (const entry of [...this.pending.values()]) {
      if (entry.link === old && entry.sent) {
        this.answerWithError(entry.id, new Error(`the session ${oldSession} was lost while this request was in progress; send it again`));
      }
    }
  }

  /**
   * Send one client message upstream: retry transient failures with backoff, re-establish
   * a lost session once (then retry a request), answer the request with an error on giving up.
   */
  private async deliver(message: JSONRPCMessage): Promise<void> {
    const request = isJSONRPCRequest(message) ? message : undefined;
    const attempt = { transientFailures: 0, renewed: false };
    for (let round = 0; round < this.options.retries + 4; round++) {
      if (this.upstream.renewing) await this.upstream.renewing.catch(() => {});
      if (this.options.closing()) return;
      const link = this.upstream.current;
      const entry = request ? this.pending.get(idKey(request.id)) : undefined;
      if (request && !entry) return; // cancelled or answered meanwhile
      if (entry) Object.assign(entry, { link, sent: false });
      const hadSession = link.transport.sessionId !== undefined;
      try {
        await link.transport.send(message);
        if (entry) entry.sent = true;
        return;
      } catch (err) {
        this.upstream.markHandled(err);
        if (this.options.closing()) return;
        if (link !== this.upstream.current) continue; // the session was replaced while this was in flight
        if (!(await this.afterFailure(message, request, link, err, hadSession, attempt))) return;
      }
    }
    if (request) this.answerWithError(request.id, new Error("gave up after repeated session changes"));
  }

  /**
   * What to do after `message` failed on `link`: re-establish a lost session (once), wait
   * out a transient failure (up to `retries`), else give up.
   * @returns true to send again, false when done (answered, dropped or given up)
   */
  private async afterFailure(
    message: JSONRPCMessage,
    request: JSONRPCRequest | undefined,
    link: Link,
    err: unknown,
    hadSession: boolean,
    attempt: { transientFailures: number; renewed: boolean },
  ): Promise<boolean> {
    const { log, retries, retryDelayMs } = this.options;
    const kind = classifyFailure(err, hadSession);
    const what = "method" in message ? message.method : undefined;
    if (kind === "session" && this.initialize && !attempt.renewed) {
      attempt.renewed = true;
      log.info(`session ${link.transport.sessionId} lost (${describeFailure(err)}); starting a new one`);
      try {
        await this.upstream.renew(link);
      } catch (renewErr) {
        if (request) this.answerWithError(request.id, renewErr);
        else log.error(`could not re-establish the session: ${describeFailure(renewErr)}`);
        return false;
      }
      if (request) return true;
      // A notification or answer belonged to the lost session: it has no meaning in the new one.
      log.info(`dropped ${what ?? "a response"} meant for the lost session`);
      return false;
    }
    if (kind === "transient" && attempt.transientFailures < retries) {
      const delay = Math.min(retryDelayMs * 2 ** attempt.transientFailures, MAX_RETRY_DELAY_MS);
      attempt.transientFailures++;
      log.info(`${describeFailure(err)}; retry ${attempt.transientFailures}/${retries} in ${delay} ms`);
      await sleep(delay);
      return true;
    }
    if (request) this.answerWithError(request.id, err);
    else log.error(`could not deliver ${what ?? "a response"}: ${describeFailure(err)}`);
    return false;
  }
}
