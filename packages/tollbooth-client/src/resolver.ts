/**
 * Agent-side resolver: `withTollbooth(fetch, options)` wraps a `fetch` so an MCP client
 * gets through tollbooth by itself.
 *
 *   const transport = new StreamableHTTPClientTransport(url, { fetch: withTollbooth(fetch) });
 *
 * On 402 it reads every challenge of `WWW-Authenticate` (RFC 9110 §11.6.1) and takes, in the
 * order of its `pay` option (default `["pow"]`), the first offered scheme whose payer
 * (payers/) accepts (docs/wire-contract.md §11):
 *  - `pow`: it solves the `PowChallenge` and retries the request once with
 *    `Tollbooth-Solution` (redeeming in the same round trip); it keeps the access token the
 *    gateway returns (`Tollbooth-Token`) per origin;
 *  - `l402`: it pays the `L402` challenge's invoice within its spending limits and keeps the
 *    credential `<macaroon>:<preimage>` per origin (sent as `Authorization: L402 …`, or as
 *    `Tollbooth-L402` when the request has an `Authorization` of its own);
 *  - `x402`: not a `WWW-Authenticate` scheme — offered when the 402 has a `PAYMENT-REQUIRED`
 *    header (or an `error.data.challenges` entry of `type: "x402"`); it signs an x402 v2
 *    `exact` payment (EIP-3009) within its spending limits and retries once with
 *    `PAYMENT-SIGNATURE` (§12); in credits mode the gateway's `Tollbooth-Token` is kept as
 *    after a solve.
 * What it keeps is sent until it expires or `Tollbooth-Credits` reaches 0; a 402, or a 401
 * whose `error.data.reason` starts with `l402_`, to a kept credential drops it and is handled
 * once as a fresh challenge. A 402 `solution_too_easy` to a fresh solution (the caller's
 * difficulty rose while it solved, so the solution buys too little) is handled as a fresh
 * challenge too — its 402 asks the current difficulty — at most `MAX_RESOLVES` times a call. On 429 it waits the integer `Retry-After` (bounded) and retries
 * once; a 429 to a fresh solution or x402 payment is waited once more and retried with the
 * same proof. When it gives up it throws `TollboothError` with a code and the HTTP status.
 */
import { parseChallengesWithText } from "../../../shared/wire/auth-params.ts";
import { fromBase64Url } from "../../../shared/wire/encoding.ts";
import { CREDITS_HEADER, TOKEN_HEADER, WWW_AUTHENTICATE_HEADER } from "../../../shared/wire/headers.ts";
import { TollboothError } from "./errors.ts";
import { l402Payer, type LightningOptions, type PayEvent } from "./payers/l402.ts";
import type { ChallengeResponse, OfferedChallenge, Payer, PayerName, Refusal, ReusableCredential, Way } from "./payers/payer.ts";
import { powPayer, type SolveEvent } from "./payers/pow.ts";
import { checkX402Options, x402Payer, type X402Options } from "./payers/x402.ts";
import type { PowSolution, SolveOptions } from "./solver/solve-pow.ts";

export type { SolveEvent } from "./payers/pow.ts";
export type { LightningOptions, PayEvent } from "./payers/l402.ts";
export type { PayerName } from "./payers/payer.ts";
export type { X402Options, X402PayEvent } from "./payers/x402.ts";

/** The `fetch` shape the MCP TypeScript SDK transports accept (`FetchLike`). */
export type FetchLike = (url: string | URL, init?: RequestInit) => Promise<Response>;

/** Options of `withTollbooth`. */
export interface WithTollboothOptions {
  /** Most leading zero bits it will work for (default 24); harder → `challenge_too_hard`. */
  maxDifficulty?: number;
  /** Time budget of one solve, milliseconds (default 60 000) → `solve_timeout`. */
  maxSolveMs?: number;
  /** Longest `Retry-After` it waits on a 429, seconds (default 30) → `rate_limited`. */
  maxWaitSeconds?: number;
  /** Cancels solving, paying (before the payment starts) and waiting → `aborted`. */
  signal?: AbortSignal;
  /** Called after each solve (for logs and metrics). */
  onSolve?: (event: SolveEvent) => void;
  /** The solver (default `solvePow` from solver/solve-pow.ts). */
  solve?: (salt: string, difficulty: number, options: SolveOptions) => Promise<PowSolution>;
  /**
   * Ways through a 402 it may take, in order of preference (default `["pow"]`: proof of work
   * only). `"l402"` needs `lightning`; `"x402"` needs `x402`.
   */
  pay?: PayerName[];
  /**
   * Wallet and spending limits for `"l402"` (satoshis): an invoice over `maxSatsPerRequest`,
   * or taking what this resolver paid in the last hour (all origins) over `maxSatsPerHour`,
   * is not paid.
   */
  lightning?: LightningOptions;
  /** Called after each Lightning payment: `{ url, scheme: "l402", sats, ms }`. */
  onPay?: (event: PayEvent) => void;
  /**
   * Signer, allowed networks and assets, and spending limits (atomic units) for `"x402"`:
   * `{ signer, networks, assets, maxPerRequest, maxPerHour, onPay? }` (see `X402Options`). An
   * offer on another network or asset, over `maxPerRequest`, or taking what was signed for in
   * the last hour in that asset over `maxPerHour`, is not paid.
   */
  x402?: X402Options;
}

/** What is kept per gateway origin: an access token, or a paid reusable credential. */
type Kept =
  | {
      kind: "token";
      token: string;
      /** Unix milliseconds. */
      expiresMs: number;
      /** Credits left as last reported by the gateway (`Tollbooth-Credits`). */
      credits: number;
    }
  | {
      kind: "credential";
      credential: ReusableCredential;
      expiresMs: number;
      credits: number;
    };

/** Seconds of margin before a token's expiry at which it is no longer sent. */
const EXPIRY_MARGIN_MS = 2_000;
/**
 * Most fresh challenges one call solves after `solution_too_easy` (docs/wire-contract.md §1):
 * each asks the difficulty of the moment, so only solves of the same caller racing this one
 * can make it too easy again; past this the call ends as `challenge_refused`.
 */
export const MAX_RESOLVES = 3;
const PAYER_NAMES: readonly PayerName[] = ["pow", "l402", "x402"];

function tokenExpiryMs(token: string): number {
  const payload = token.split(".")[2];
  const bytes = payload ? fromBase64Url(payload) : null;
  try {
    const exp = JSON.parse(new TextDecoder().decode(bytes ?? new Uint8Array())).exp;
    return typeof exp === "number" ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

function replayable(body: RequestInit["body"]): boolean {
  return body == null || typeof body === "string" || body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof URLSearchParams || (typeof Blob !== "undefined" && body instanceof Blob);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new TollboothError("aborted", "wait aborted"));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new TollboothError("aborted", "wait aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A JSON body (the first message of a batch), read from a clone; `undefined` when not JSON. */
async function jsonBody(res: Response): Promise<unknown> {
  try {
    const body: unknown = JSON.parse(await res.clone().text());
    return Array.isArray(body) ? body[0] : body;
  } catch {
    return undefined;
  }
}

/** `error.data.reason` of a JSON-RPC error body (the first of a batch), read from a clone. */
async function refusalReason(res: Response): Promise<string | undefined> {
  const reason = ((await jsonBody(res)) as { error?: { data?: { reason?: unknown } } } | null | undefined)?.error?.data?.reason;
  return typeof reason === "string" ? reason : undefined;
}

/** Validate `pay` and `lightning` (programming errors → TypeError naming the option). */
function checkOptions(options: WithTollboothOptions): PayerName[] {
  const pay = options.pay ?? ["pow"];
  if (!Array.isArray(pay) || pay.length === 0) throw new TypeError(`withTollbooth: option pay must be a non-empty array of "pow" | "l402" | "x402"`);
  for (const name of pay) {
    if (!PAYER_NAMES.includes(name)) throw new TypeError(`withTollbooth: option pay names an unknown way ${JSON.stringify(name)} (known: "pow", "l402", "x402")`);
  }
  if (new Set(pay).size !== pay.length) throw new TypeError(`withTollbooth: option pay names a way twice: ${JSON.stringify(pay)}`);
  if (pay.includes("l402")) {
    const ln = options.lightning;
    if (!ln) throw new TypeError(`withTollbooth: option pay includes "l402" but option lightning ({ wallet, maxSatsPerRequest, maxSatsPerHour }) is missing`);
    if (typeof ln.wallet?.payInvoice !== "function") throw new TypeError("withTollbooth: option lightning.wallet must have payInvoice(bolt11)");
    for (const key of ["maxSatsPerRequest", "maxSatsPerHour"] as const) {
      if (typeof ln[key] !== "number" || !(ln[key] >= 0)) throw new TypeError(`withTollbooth: option lightning.${key} must be a number ≥ 0 (satoshis)`);
    }
  }
  if (pay.includes("x402")) checkX402Options(options.x402);
  return pay;
}

/**
 * The error when no payer accepted: `challenge_too_hard` when proof-of-work difficulty was
 * the only reason, `challenge_unreadable` when nothing could be read, else `payment_refused`.
 */
function refusalError(refusals: Refusal[], status: number): TollboothError {
  const readable = refusals.filter((r) => r.reason !== "unreadable");
  const message = refusals.map((r) => r.message).join("; ");
  if (readable.length === 0) return new TollboothError("challenge_unreadable", message, status);
  if (readable.every((r) => r.reason === "too_hard")) return new TollboothError("challenge_too_hard", readable.map((r) => r.message).join("; "), status);
  return new TollboothError("payment_refused", readable.map((r) => r.message).join("; "), status);
}

/**
 * Wrap `fetch` with the tollbooth resolver.
 * @param fetchImpl the underlying fetch (default `globalThis.fetch`)
 * @param options limits, callbacks and the ways through (`pay`, `lightning`, `x402`); see
 *   `WithTollboothOptions`
 * @returns a `FetchLike` for `StreamableHTTPClientTransport`'s `fetch` option
 * @throws TypeError at once for `pay` naming an unknown way, `"l402"` without a valid
 *   `lightning` option, or `"x402"` without a valid `x402` option (no signer, no networks or
 *   assets, non-positive limits); (from the returned function) TollboothError — see
 *   `TollboothErrorCode`
 */
export function withTollbooth(fetchImpl: FetchLike = (u, i) => globalThis.fetch(u, i), options: WithTollboothOptions = {}): FetchLike {
  const pay = checkOptions(options);
  const maxWaitSeconds = options.maxWaitSeconds ?? 30;
  const payers: Record<PayerName, Payer> = {
    pow: powPayer({ maxDifficulty: options.maxDifficulty, maxSolveMs: options.maxSolveMs, signal: options.signal, onSolve: options.onSolve, solve: options.solve }),
    l402: l402Payer({ lightning: options.lightning, signal: options.signal, onPay: options.onPay }),
    x402: x402Payer({ x402: options.x402, signal: options.signal }),
  };
  /** Whether a payer of `pay` reads the 402 beyond `WWW-Authenticate` (then its body is parsed). */
  const readsResponse = pay.some((name) => payers[name].offered !== undefined);
  const kept = new Map<string, Kept>();
  /** Credentials being bought, per origin: a concurrent 402 waits for it instead of paying again. */
  const buying = new Map<string, Promise<ReusableCredential>>();

  const usable = (origin: string): Kept | undefined => {
    const k = kept.get(origin);
    if (!k) return undefined;
    if (Date.now() < k.expiresMs - EXPIRY_MARGIN_MS && k.credits > 0) return k;
    kept.delete(origin);
    return undefined;
  };

  const remember = (origin: string, res: Response, sent: Kept | undefined) => {
    const minted = res.headers.get(TOKEN_HEADER);
    const credits = res.headers.get(CREDITS_HEADER);
    const current = kept.get(origin);
    if (minted) {
      kept.set(origin, { kind: "token", token: minted, expiresMs: tokenExpiryMs(minted), credits: credits === null ? Infinity : Number(credits) });
    } else if (credits !== null && current && (current === sent || (sent === undefined && current.kind === "token"))) {
      current.credits = Number(credits);
      if (!(current.credits > 0)) kept.delete(origin);
    }
  };

  /** One reusable credential per origin at a time: a second buyer gets the first's. */
  const buy = (origin: string, way: Extract<Way, { kind: "credential" }>): Promise<ReusableCredential> => {
    const inFlight = buying.get(origin);
    if (inFlight) return inFlight;
    const promise = way.obtain().finally(() => buying.delete(origin));
    buying.set(origin, promise);
    return promise;
  };

  return async function tollboothFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const origin = new URL(String(url)).origin;
    const requestHeaders = new Headers(init.headers);
    /** Send the request with `credential` (what is kept, or a fresh one) and `extra` headers. */
    const send = (extra: Record<string, string>, credential: Kept | undefined) => {
      const headers = new Headers(init.headers);
      if (credential?.kind === "token") headers.set(TOKEN_HEADER, credential.token);
      if (credential?.kind === "credential") for (const [k, v] of Object.entries(credential.credential.headersFor(requestHeaders))) headers.set(k, v);
      for (const [k, v] of Object.entries(extra)) headers.set(k, v);
      return fetchImpl(url, { ...init, headers });
    };

    let sent = usable(origin);
    let res = await send({}, sent);
    remember(origin, res, sent);
    let waited = false;
    /** A fresh solution, payment or credential was sent (which one): another refusal ends the call. */
    let redeemed: "solution" | "x402 payment" | "credential" | undefined;
    /** The headers of the fresh solution or x402 payment last sent, until an answer other than 429. */
    let unanswered: Record<string, string> | undefined;
    /** Fresh challenges solved after `solution_too_easy` in this call. */
    let resolves = 0;
    for (;;) {
      if (res.status === 429 && !waited) {
        const retryAfter = Number(res.headers.get("retry-after"));
        if (!Number.isInteger(retryAfter) || retryAfter < 0 || retryAfter > maxWaitSeconds) {
          throw new TollboothError("rate_limited", `rate limited: Retry-After ${res.headers.get("retry-after") ?? "absent"} exceeds ${maxWaitSeconds} s`, 429);
        }
        if (!replayable(init.body)) throw new TollboothError("body_not_replayable", "cannot retry a streamed request body", 429);
        await res.body?.cancel();
        await sleep(retryAfter * 1000, options.signal);
        waited = true;
        // A 429 answering a fresh solution or x402 payment comes from a ceiling in front of
        // redemption (the caller's `ceiling`, the network ceiling): nothing was redeemed, so the
        // same proof is sent again — without it the retry meets a 402 and the call ends as
        // `challenge_refused`. A token kept meanwhile (minted with that 429, or by a concurrent
        // call) is preferred; a proof the gateway did redeem is refused as before.
        sent = usable(origin);
        res = await send(sent ? {} : (unanswered ?? {}), sent);
        remember(origin, res, sent);
        continue;
      }
      if (res.status === 429) throw new TollboothError("rate_limited", "rate limited again after waiting Retry-After", 429);
      unanswered = undefined;
      const status = res.status;
      // A 401 is tollbooth's only when it refuses an L402 credential; any other is the origin's.
      if (status === 401 && !(await refusalReason(res))?.startsWith("l402_")) return res;
      if (status !== 402 && status !== 401) return res;
      if (redeemed) {
        // The solution was solved below the caller's difficulty of now: the 402's fresh challenge asks it; solve that one.
        const again = redeemed === "solution" && status === 402 && resolves < MAX_RESOLVES && (await refusalReason(res)) === "solution_too_easy";
        if (!again) throw new TollboothError("challenge_refused", `the gateway refused the ${redeemed}: ${await res.text()}`, status);
        resolves++;
        redeemed = undefined;
      }
      // What was sent is refused (or spent): drop it, unless something newer was kept meanwhile.
      if (sent && kept.get(origin) === sent) kept.delete(origin);

      const header = res.headers.get(WWW_AUTHENTICATE_HEADER) ?? "";
      const challenges = parseChallengesWithText(header) ?? [];
      // Ways offered outside WWW-Authenticate (x402's PAYMENT-REQUIRED), per payer of `pay` that reads them.
      const elsewhere = new Map<PayerName, OfferedChallenge[]>();
      if (readsResponse) {
        const response: ChallengeResponse = { url: String(url), status, headers: res.headers, body: await jsonBody(res) };
        for (const name of pay) {
          const offered = payers[name].offered?.(response);
          if (offered && offered.length > 0) elsewhere.set(name, offered);
        }
      }
      if (challenges.length === 0 && elsewhere.size === 0) {
        throw new TollboothError("challenge_unreadable", `${status} without a challenge the resolver can read: ${header || "no WWW-Authenticate"}`, status);
      }
      const context = { url: String(url), origin, requestHeaders };
      const refusals: Refusal[] = [];
      let way: Way | undefined;
      let wayOf: PayerName | undefined;
      for (const name of pay) {
        const payer = payers[name];
        // L402 before LSAT (Aperture offers both for one invoice).
        const offered = payer.offered
          ? (elsewhere.get(name) ?? [])
          : challenges.filter((c) => payer.handles(c.scheme)).sort((a, b) => Number(a.scheme.toLowerCase() === "lsat") - Number(b.scheme.toLowerCase() === "lsat"));
        for (const challenge of offered as OfferedChallenge[]) {
          const choice = payer.choose(challenge, context);
          if (choice.ok) {
            way = choice.way;
            wayOf = name;
            break;
          }
          refusals.push(choice);
        }
        if (way) break;
      }
      if (!way) {
        if (refusals.length === 0) {
          throw new TollboothError("challenge_unreadable", `${status} without a challenge of a scheme the resolver may take (pay: ${pay.join(", ")}): ${header}`, status);
        }
        throw refusalError(refusals, status);
      }
      if (!replayable(init.body)) throw new TollboothError("body_not_replayable", "cannot retry a streamed request body", status);
      await res.body?.cancel();
      redeemed = way.kind === "once" ? (wayOf === "x402" ? "x402 payment" : "solution") : "credential";
      if (way.kind === "once") {
        const extra = await way.obtain();
        sent = undefined;
        unanswered = extra;
        waited = false; // the proof's own 429, if any, is waited once too (at most two waits a call)
        res = await send(extra, undefined);
      } else {
        const credential = await buy(origin, way);
        sent = { kind: "credential", credential, expiresMs: credential.expiresMs, credits: Infinity };
        // Kept at once, so concurrent calls to this origin reuse it instead of paying again.
        const current = kept.get(origin);
        if (current?.kind === "credential" && current.credential === credential) sent = current;
        else kept.set(origin, sent);
        res = await send({}, sent);
      }
      remember(origin, res, sent);
    }
  };
}
