/**
 * Agent-side resolver: `withTollbooth(fetch, options)` wraps a `fetch` so an MCP client
 * gets through tollbooth by itself.
 *
 *   const transport = new StreamableHTTPClientTransport(url, { fetch: withTollbooth(fetch) });
 *
 * On 402 with a `PowChallenge` it solves the challenge and retries the request once with
 * `Tollbooth-Solution` (redeeming in the same round trip); it keeps the access token the
 * gateway returns (`Tollbooth-Token`) per origin and sends it until it expires or its
 * credits run out. On 429 it waits the integer `Retry-After` (bounded) and retries once.
 * When it gives up it throws `TollboothError` with a code and the HTTP status.
 */
import { parseAuthParams } from "../auth-params.ts";
import { POW_SCHEME } from "../challenge.ts";
import { fromBase64Url } from "../encoding.ts";
import { TollboothError } from "./errors.ts";
import { solvePow, type PowSolution, type SolveOptions } from "./solver.ts";

/** The `fetch` shape the MCP TypeScript SDK transports accept (`FetchLike`). */
export type FetchLike = (url: string | URL, init?: RequestInit) => Promise<Response>;

/** What the resolver reports after solving a challenge. */
export interface SolveEvent {
  /** The request URL that was challenged. */
  url: string;
  difficulty: number;
  /** Hashes computed. */
  hashes: number;
  /** Solve time, milliseconds. */
  ms: number;
}

/** Options of `withTollbooth`. */
export interface WithTollboothOptions {
  /** Most leading zero bits it will work for (default 24); harder → `challenge_too_hard`. */
  maxDifficulty?: number;
  /** Time budget of one solve, milliseconds (default 60 000) → `solve_timeout`. */
  maxSolveMs?: number;
  /** Longest `Retry-After` it waits on a 429, seconds (default 30) → `rate_limited`. */
  maxWaitSeconds?: number;
  /** Cancels solving and waiting → `aborted`. */
  signal?: AbortSignal;
  /** Called after each solve (for logs and metrics). */
  onSolve?: (event: SolveEvent) => void;
  /** The solver (default `solvePow` from shared/agent/solver.ts). */
  solve?: (salt: string, difficulty: number, options: SolveOptions) => Promise<PowSolution>;
}

interface CachedToken {
  token: string;
  /** Unix milliseconds. */
  expiresMs: number;
  /** Credits left as last reported by the gateway (`Tollbooth-Credits`). */
  credits: number;
}

/** Seconds of margin before a token's expiry at which it is no longer sent. */
const EXPIRY_MARGIN_MS = 2_000;

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

/**
 * Wrap `fetch` with the tollbooth resolver.
 * @param fetchImpl the underlying fetch (default `globalThis.fetch`)
 * @returns a `FetchLike` for `StreamableHTTPClientTransport`'s `fetch` option
 * @throws (from the returned function) TollboothError — see `TollboothErrorCode`
 */
export function withTollbooth(fetchImpl: FetchLike = (u, i) => globalThis.fetch(u, i), options: WithTollboothOptions = {}): FetchLike {
  const maxDifficulty = options.maxDifficulty ?? 24;
  const maxSolveMs = options.maxSolveMs ?? 60_000;
  const maxWaitSeconds = options.maxWaitSeconds ?? 30;
  const solve = options.solve ?? solvePow;
  const tokens = new Map<string, CachedToken>();

  const remember = (origin: string, res: Response) => {
    const minted = res.headers.get("tollbooth-token");
    const credits = res.headers.get("tollbooth-credits");
    const cached = tokens.get(origin);
    if (minted) tokens.set(origin, { token: minted, expiresMs: tokenExpiryMs(minted), credits: credits === null ? Infinity : Number(credits) });
    else if (cached && credits !== null) cached.credits = Number(credits);
  };

  return async function tollboothFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const origin = new URL(String(url)).origin;
    const send = (extra: Record<string, string>, useToken: boolean) => {
      const headers = new Headers(init.headers);
      const cached = tokens.get(origin);
      if (useToken && cached) {
        if (Date.now() < cached.expiresMs - EXPIRY_MARGIN_MS && cached.credits > 0) headers.set("tollbooth-token", cached.token);
        else tokens.delete(origin);
      }
      for (const [k, v] of Object.entries(extra)) headers.set(k, v);
      return fetchImpl(url, { ...init, headers });
    };

    let res = await send({}, true);
    remember(origin, res);
    let waited = false;
    let solved = false;
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
        res = await send({}, true);
        remember(origin, res);
        continue;
      }
      if (res.status === 429) throw new TollboothError("rate_limited", "rate limited again after waiting Retry-After", 429);
      if (res.status !== 402) return res;
      if (solved) throw new TollboothError("challenge_refused", `the gateway refused the solution: ${await res.text()}`, 402);

      const header = res.headers.get("www-authenticate") ?? "";
      const parsed = parseAuthParams(header);
      if (!parsed || parsed.scheme?.toLowerCase() !== POW_SCHEME.toLowerCase()) {
        throw new TollboothError("challenge_unreadable", `402 without a ${POW_SCHEME} challenge: ${header || "no WWW-Authenticate"}`, 402);
      }
      const { salt, difficulty: bits, algorithm } = parsed.params;
      const difficulty = Number(bits);
      if (salt === undefined || !Number.isInteger(difficulty) || (algorithm ?? "sha256").toLowerCase() !== "sha256") {
        throw new TollboothError("challenge_unreadable", `unreadable challenge: ${header}`, 402);
      }
      if (difficulty > maxDifficulty) {
        throw new TollboothError("challenge_too_hard", `challenge asks ${difficulty} bits, more than maxDifficulty ${maxDifficulty}`, 402);
      }
      if (!replayable(init.body)) throw new TollboothError("body_not_replayable", "cannot retry a streamed request body", 402);
      await res.body?.cancel();
      tokens.delete(origin);
      const solution = await solve(salt, difficulty, { signal: options.signal, maxMs: maxSolveMs });
      options.onSolve?.({ url: String(url), difficulty, hashes: solution.hashes, ms: solution.ms });
      // The challenge's parameters exactly as received, plus the nonce.
      const params = header.trim().slice(parsed.scheme!.length).trim();
      solved = true;
      res = await send({ "tollbooth-solution": `${params}, nonce="${solution.nonce}"` }, false);
      remember(origin, res);
    }
  };
}
