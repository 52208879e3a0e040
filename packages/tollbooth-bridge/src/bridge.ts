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
 * written after a `ping` to the client was answered (see `toClient` inside `runBridge`).
 *
 * Session re-establishment (MCP 2025-06-18 / 2025-11-25 "Session Management"): when a
 * request carrying `Mcp-Session-Id` is answered 404 (or 400 naming the session, see
 * failures.ts), the bridge starts a fresh HTTP transport, sends the client's original
 * `initialize` (under a bridge-owned id; its response is swallowed, the client already has
 * one) and `notifications/initialized`, then retries the failed request. Requests already
 * in progress on the lost session are answered with a JSON-RPC error (their stream is gone).
 * Transient connection failures are retried with exponential backoff. When the bridge gives
 * up, the pending request is answered with a JSON-RPC error saying why.
 */
import type { Readable, Writable } from "node:stream";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type JSONRPCRequest,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { privateKeyToAccount } from "viem/accounts";
import { withTollbooth, type FetchLike, type LightningOptions, type PayerName, type X402Options } from "../../tollbooth-client/src/resolver.ts";
import { lndWallet, type LightningWallet } from "../../tollbooth-client/src/payers/lightning-wallet.ts";
import { classifyFailure, describeFailure, errorResponse } from "./failures.ts";
import { streamLog, type BridgeLog } from "./log.ts";

/** Options of {@link runBridge}. */
export interface BridgeOptions {
  /** The remote MCP endpoint (Streamable HTTP), e.g. `https://mcp.example.com/mcp`. */
  url: URL;
  /** Headers sent on every HTTP request (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** Most leading zero bits the resolver will solve (default 24, see `withTollbooth`). */
  maxDifficulty?: number;
  /** Time budget of one solve, milliseconds (default 60 000). */
  maxSolveMs?: number;
  /** Ways through a 402, in order of preference (default `["pow"]`, see `withTollbooth`). */
  pay?: PayerName[];
  /**
   * Paying over Lightning (needed when `pay` includes `"l402"`): spending limits in
   * satoshis, and either the LND node (`lndUrl`, `macaroonHex`; the bridge builds
   * `lndWallet`) or a ready `wallet`.
   */
  lightning?: BridgeLightning;
  /**
   * Paying over x402 (needed when `pay` includes `"x402"`): allowed networks and assets,
   * spending limits in atomic units, and either a `privateKey` (`0x` + 64 hex; the bridge
   * builds a viem account with `privateKeyToAccount`) or a ready `signer`. Payments are
   * logged; an `onPay` given here is called too.
   */
  x402?: BridgeX402;
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

/** The Lightning part of {@link BridgeOptions}. */
export type BridgeLightning = Omit<LightningOptions, "wallet"> & ({ wallet: LightningWallet } | { lndUrl: URL | string; macaroonHex: string });

/** The x402 part of {@link BridgeOptions}. */
export type BridgeX402 = Omit<X402Options, "signer"> & ({ signer: X402Options["signer"] } | { privateKey: `0x${string}` });

/** A running bridge. */
export interface BridgeHandle {
  /** Ends the session (HTTP DELETE, at most 2 s), closes both transports. Idempotent; never throws. */
  close(): Promise<void>;
  /** Resolves once the bridge has closed (stdin ended, stdout broke, or `close()`). */
  closed: Promise<void>;
}

/** One HTTP transport and the session it carries; replaced when the session is re-established. */
interface Link {
  transport: StreamableHTTPClientTransport;
  /** 1, 2, …: which session of this bridge. */
  generation: number;
}

/** A client request not answered yet. */
interface Pending {
  id: RequestId;
  /** The link it was last sent on, and whether that send completed (then its answer streams on that link). */
  link: Link | undefined;
  sent: boolean;
}

const DELETE_TIMEOUT_MS = 2_000;
const MAX_RETRY_DELAY_MS = 8_000;
const REINIT_ID_PREFIX = "tollbooth-bridge/reinit/";
const PING_ID_PREFIX = "bridge-ping/";
/** Longest a response waits behind a ping barrier (see `toClient`), milliseconds. */
const PING_BARRIER_MS = 500;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const idKey = (id: RequestId) => `${typeof id}:${id}`;

/**
 * Start relaying between stdio and the Streamable HTTP endpoint `options.url`.
 * Resolves once stdin is being read; nothing is sent upstream before the client's first message.
 * @throws TypeError (before anything starts) for `pay` with `"l402"` and no usable `lightning`,
 *   or with `"x402"` and no usable `x402` (a malformed `privateKey` included);
 *   nothing else itself: failures are logged and answered to the client as JSON-RPC errors
 */
export async function runBridge(options: BridgeOptions): Promise<BridgeHandle> {
  const log = options.log ?? streamLog("info");
  const url = options.url;
  const retries = options.retries ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const reinitTimeoutMs = options.reinitTimeoutMs ?? 30_000;
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;

  const ln = options.lightning;
  const lightning: LightningOptions | undefined = ln && {
    wallet: "wallet" in ln ? ln.wallet : lndWallet({ url: String(ln.lndUrl), macaroonHex: ln.macaroonHex }),
    maxSatsPerRequest: ln.maxSatsPerRequest,
    maxSatsPerHour: ln.maxSatsPerHour,
  };
  const x4 = options.x402;
  let x402: X402Options | undefined;
  if (x4) {
    let signer: X402Options["signer"];
    if ("signer" in x4) signer = x4.signer;
    else {
      try {
        signer = privateKeyToAccount(x4.privateKey);
      } catch {
        throw new TypeError("runBridge: option x402.privateKey is not a valid private key (0x + 64 hex)");
      }
    }
    const { networks, assets, maxPerRequest, maxPerHour, onPay } = x4;
    x402 = {
      signer,
      networks,
      assets,
      maxPerRequest,
      maxPerHour,
      onPay: (e) => {
        log.info(`paid ${e.amount} atomic units of ${e.asset} on ${e.network} (x402; signed in ${Math.round(e.ms)} ms)`);
        onPay?.(e);
      },
    };
  }
  const tollboothFetch = withTollbooth(options.fetch, {
    maxDifficulty: options.maxDifficulty,
    maxSolveMs: options.maxSolveMs,
    pay: options.pay,
    lightning,
    x402,
    onSolve: (e) => log.info(`solved challenge: ${e.difficulty} bits in ${Math.round(e.ms)} ms (${e.hashes} hashes)`),
    onPay: (e) => log.info(`paid ${e.sats} sats (L402) in ${Math.round(e.ms)} ms`),
  });
  const stdio = new StdioServerTransport(stdin, stdout);

  let initialize: JSONRPCRequest | undefined;
  let initializedSent = false;
  let reinitCount = 0;
  /** Client requests awaiting an answer, by `idKey`. */
  const pending = new Map<string, Pending>();
  /** The bridge's own re-sent `initialize` requests, by id. */
  const reinitWaiters = new Map<string, (message: JSONRPCMessage) => void>();
  /** Errors already handled by the code that awaited `send()` (not logged again from `onerror`). */
  const handled = new WeakSet<object>();
  let renewing: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));

  const write = (message: JSONRPCMessage) =>
    void stdio.send(message).catch((err: unknown) => log.error(`writing to stdout: ${describeFailure(err)}`));

  /** Set while a ping barrier holds stdout writes back: the last queued write. */
  let outbox: Promise<void> | undefined;
  /** A `notifications/progress` was queued for stdout since the last barrier. */
  let progressQueued = false;
  let pingCount = 0;
  /** The bridge's own pings to the client awaiting their answer, by id. */
  const pingWaiters = new Map<string, () => void>();

  /**
   * Relay one message to the client. Stdout writes keep arrival order (a message queued
   * behind a barrier waits for it, and so does everything after it).
   *
   * Ordering invariant: a client must handle a progress notification before it reads the
   * response to that call. The MCP SDK's `Protocol` handles a notification one microtask
   * later but a response at once, and the response removes the call's progress handler; so
   * when the last progress and the response reach the client in the same stdout chunk (they
   * reach the bridge together, and two back-to-back writes share a pipe read), that progress
   * is dropped ("unknown token"). Before writing a response that follows a progress
   * notification, the bridge therefore sends the client a `ping` (MCP "Ping": either side
   * may send one) and writes the response only after the client answered it (or after
   * `PING_BARRIER_MS`): a client answers a request only after handling what it read before.
   */
  function toClient(message: JSONRPCMessage): void {
    const isResponse = isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message);
    const barrier = isResponse && progressQueued;
    if (barrier) progressQueued = false;
    else if (isJSONRPCNotification(message) && message.method === "notifications/progress") progressQueued = true;
    if (!barrier && !outbox) return write(message);
    const next = (outbox ?? Promise.resolve()).then(async () => {
      if (barrier && !closing) await pingClient();
      write(message);
    });
    outbox = next;
    void next.finally(() => {
      if (outbox === next) outbox = undefined;
    });
  }

  /** Ping the client; resolves on its answer (result or error), after `PING_BARRIER_MS`, or on close. */
  function pingClient(): Promise<void> {
    const id = `${PING_ID_PREFIX}${++pingCount}`;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pingWaiters.delete(id);
        resolve();
      };
      const timer = setTimeout(() => {
        log.debug(`no answer to ping ${id} within ${PING_BARRIER_MS} ms; writing on`);
        done();
      }, PING_BARRIER_MS);
      pingWaiters.set(id, done);
      write({ jsonrpc: "2.0", id, method: "ping" });
    });
  }

  const answerWithError = (id: RequestId, err: unknown) => {
    if (!pending.delete(idKey(id))) return;
    const response = errorResponse(id, err, url.href);
    log.error(`request ${JSON.stringify(id)} failed: ${response.error.message}`);
    toClient(response);
  };

  const newLink = (generation: number): Link => {
    const transport = new StreamableHTTPClientTransport(url, {
      fetch: tollboothFetch,
      requestInit: { headers: { ...options.headers } },
    });
    const link: Link = { transport, generation };
    transport.onmessage = (message) => fromServer(link, message);
    transport.onerror = (err) => {
      // send() reports its failure here and then throws it; the thrower handles those.
      setTimeout(() => {
        if (closing || link !== current || (typeof err === "object" && err !== null && handled.has(err))) return;
        log.error(`session ${transport.sessionId ?? "(none)"}: ${describeFailure(err)}`);
      }, 0);
    };
    return link;
  };
  let current = newLink(1);
  await current.transport.start();

  /** A message from the server (any link): swallow re-init answers, relay the rest. */
  function fromServer(link: Link, message: JSONRPCMessage): void {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      const id = message.id;
      const waiter = typeof id === "string" ? reinitWaiters.get(id) : undefined;
      if (waiter) return waiter(message);
      if (id === undefined || !pending.delete(idKey(id))) {
        log.debug(`dropped a response for no pending request (id ${JSON.stringify(id)})`);
        return;
      }
      if (initialize && id === initialize.id && isJSONRPCResultResponse(message)) {
        const version = (message.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof version === "string") link.transport.setProtocolVersion(version);
      }
      log.debug(`← response ${JSON.stringify(id)}`);
    } else {
      log.debug(`← ${"method" in message ? message.method : "message"}`);
    }
    toClient(message);
  }

  /** A message from the local client: note what must be remembered, then deliver it. */
  function fromClient(message: JSONRPCMessage): void {
    if (closing) return;
    if (isJSONRPCRequest(message)) {
      pending.set(idKey(message.id), { id: message.id, link: undefined, sent: false });
      log.debug(`→ ${message.method} ${JSON.stringify(message.id)}`);
      if (message.method === "initialize") {
        initialize = message;
        initializedSent = false;
        if (current.transport.sessionId) {
          // A second initialize from the client: it wants a new session.
          const old = current;
          current = newLink(old.generation + 1);
          void current.transport.start().then(() => deliver(message));
          void old.transport.close();
          return;
        }
      }
    } else if (isJSONRPCNotification(message)) {
      log.debug(`→ ${message.method}`);
      if (message.method === "notifications/initialized") initializedSent = true;
      if (message.method === "notifications/cancelled") {
        const requestId = (message.params as { requestId?: unknown } | undefined)?.requestId;
        if (typeof requestId === "string" || typeof requestId === "number") pending.delete(idKey(requestId));
      }
    } else {
      const id = "id" in message ? message.id : undefined;
      const pong = typeof id === "string" ? pingWaiters.get(id) : undefined;
      if (pong) return pong(); // the answer to the bridge's own ping: not the server's business
      log.debug(`→ response ${JSON.stringify(id ?? null)}`);
    }
    void deliver(message);
  }

  /**
   * Send one client message upstream: retry transient failures with backoff, re-establish
   * a lost session once (then retry a request), answer the request with an error on giving up.
   */
  async function deliver(message: JSONRPCMessage): Promise<void> {
    const request = isJSONRPCRequest(message) ? message : undefined;
    let transientFailures = 0;
    let renewed = false;
    for (let round = 0; round < retries + 4; round++) {
      if (renewing) await renewing.catch(() => {});
      if (closing) return;
      const link = current;
      const entry = request ? pending.get(idKey(request.id)) : undefined;
      if (request && !entry) return; // cancelled or answered meanwhile
      if (entry) Object.assign(entry, { link, sent: false });
      const hadSession = link.transport.sessionId !== undefined;
      try {
        await link.transport.send(message);
        if (entry) entry.sent = true;
        return;
      } catch (err) {
        if (typeof err === "object" && err !== null) handled.add(err);
        if (closing) return;
        if (link !== current) continue; // the session was replaced while this was in flight
        const kind = classifyFailure(err, hadSession);
        if (kind === "session" && initialize && !renewed) {
          renewed = true;
          log.info(`session ${link.transport.sessionId} lost (${describeFailure(err)}); starting a new one`);
          try {
            await renew(link);
          } catch (renewErr) {
            if (request) answerWithError(request.id, renewErr);
            else log.error(`could not re-establish the session: ${describeFailure(renewErr)}`);
            return;
          }
          if (request) continue;
          // A notification or answer belonged to the lost session: it has no meaning in the new one.
          log.info(`dropped ${"method" in message ? message.method : "a response"} meant for the lost session`);
          return;
        }
        if (kind === "transient" && transientFailures < retries) {
          const delay = Math.min(retryDelayMs * 2 ** transientFailures, MAX_RETRY_DELAY_MS);
          transientFailures++;
          log.info(`${describeFailure(err)}; retry ${transientFailures}/${retries} in ${delay} ms`);
          await sleep(delay);
          continue;
        }
        if (request) answerWithError(request.id, err);
        else log.error(`could not deliver ${"method" in message ? message.method : "a response"}: ${describeFailure(err)}`);
        return;
      }
    }
    if (request) answerWithError(request.id, new Error("gave up after repeated session changes"));
  }

  /** Replace `failed` by a new session (once, however many requests noticed the loss). */
  function renew(failed: Link): Promise<void> {
    if (current !== failed) return renewing ?? Promise.resolve();
    const promise = reestablish(failed).finally(() => {
      if (renewing === promise) renewing = undefined;
    });
    renewing = promise;
    return promise;
  }

  async function reestablish(old: Link): Promise<void> {
    const oldSession = old.transport.sessionId;
    const link = newLink(old.generation + 1);
    current = link;
    await link.transport.start();
    void old.transport.close(); // aborts its streams and pending reconnections
    for (const entry of [...pending.values()]) {
      if (entry.link === old && entry.sent) {
        answerWithError(entry.id, new Error(`the session ${oldSession} was lost while this request was in progress; send it again`));
      }
    }

    const init = initialize!;
    const id = `${REINIT_ID_PREFIX}${++reinitCount}`;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answer = new Promise<JSONRPCMessage>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to initialize within ${reinitTimeoutMs} ms`)), reinitTimeoutMs);
      reinitWaiters.set(id, resolve);
    });
    answer.catch(() => {}); // awaited below unless the send fails first
    try {
      await sendWithRetry(link, { ...init, id });
      const response = await answer;
      if (isJSONRPCErrorResponse(response)) throw new Error(`the server refused initialize: ${response.error.message}`);
      const version = isJSONRPCResultResponse(response) ? (response.result as { protocolVersion?: unknown }).protocolVersion : undefined;
      if (typeof version === "string") link.transport.setProtocolVersion(version);
      if (initializedSent) await sendWithRetry(link, { jsonrpc: "2.0", method: "notifications/initialized" });
    } finally {
      clearTimeout(timer);
      reinitWaiters.delete(id);
    }
    log.info(`session re-established: ${oldSession} → ${link.transport.sessionId ?? "(no session id)"}`);
  }

  /** `send` with the transient-failure retries of `deliver` (for the bridge's own messages). */
  async function sendWithRetry(link: Link, message: JSONRPCMessage): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await link.transport.send(message);
      } catch (err) {
        if (typeof err === "object" && err !== null) handled.add(err);
        if (closing || attempt >= retries || classifyFailure(err, false) !== "transient") throw err;
        const delay = Math.min(retryDelayMs * 2 ** attempt, MAX_RETRY_DELAY_MS);
        log.info(`${describeFailure(err)}; retry ${attempt + 1}/${retries} in ${delay} ms`);
        await sleep(delay);
      }
    }
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      stdin.off("end", onEnd);
      stdin.off("close", onEnd);
      stdout.off("error", onStdoutError);
      for (const done of [...pingWaiters.values()]) done();
      if (renewing) await Promise.race([renewing.catch(() => {}), sleep(DELETE_TIMEOUT_MS)]);
      const transport = current.transport;
      if (transport.sessionId) {
        // The SDK's terminateSession: HTTP DELETE with Mcp-Session-Id (405 accepted).
        await Promise.race([transport.terminateSession().catch(() => {}), sleep(DELETE_TIMEOUT_MS)]);
      }
      await transport.close().catch(() => {});
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

  stdio.onmessage = fromClient;
  stdio.onerror = (err) => log.error(`stdin: ${describeFailure(err)}`);
  stdin.once("end", onEnd);
  stdin.once("close", onEnd);
  stdout.on("error", onStdoutError);
  await stdio.start();
  return { close, closed };
}
