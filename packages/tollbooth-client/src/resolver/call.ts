/**
 * One call through the resolver: send the request (with what is kept for its origin), and
 * until the answer is neither a 429 nor a tollbooth challenge:
 *  - 429: wait the integer `Retry-After` (at most `maxWaitSeconds`) once and send again —
 *    with the same fresh proof when the 429 answered one;
 *  - 402, or a 401 a payer claims: drop what was sent, read the challenges, take the first
 *    offered one a payer of `pay` accepts, obtain its proof or credential and send again.
 * A refusal of a fresh proof or credential ends the call (`challenge_refused`), unless its
 * payer renews on that reason (`Payer.renewOn`), at most `MAX_RESOLVES` times a call.
 */
import { parseChallengesWithText } from "../../../../shared/wire/auth-params.ts";
import { WWW_AUTHENTICATE_HEADER } from "../../../../shared/wire/headers.ts";
import { TollboothError } from "../errors.ts";
import { claimed401 } from "../payers/index.ts";
import type { ChallengeResponse, OfferedChallenge, Payer, Refusal, Way } from "../payers/payer.ts";
import { headersOf, type Kept, type KeptCredentials } from "./kept.ts";
import { jsonBody, refusalReason, replayable, sleep } from "./responses.ts";

/** The `fetch` shape the MCP TypeScript SDK transports accept (`FetchLike`). */
export type FetchLike = (url: string | URL, init?: RequestInit) => Promise<Response>;

/**
 * Most fresh challenges one call takes again after a refusal its payer renews on (e.g.
 * `solution_too_easy`, docs/wire-contract.md §1): each asks what the gateway asks at that
 * moment, so only calls of the same caller racing this one can make it fail again; past
 * this the call ends as `challenge_refused`.
 */
export const MAX_RESOLVES = 3;

/** What every call of one resolver shares. */
export interface Resolver {
  fetch: FetchLike;
  /** The payers of `pay`, in its order. */
  payers: Payer[];
  kept: KeptCredentials;
  /** Longest `Retry-After` waited, seconds. */
  maxWaitSeconds: number;
  signal: AbortSignal | undefined;
}

/** A way a payer accepted. */
interface Taken {
  way: Way;
  payer: Payer;
}

/**
 * The error when no payer accepted: `challenge_too_hard` when proof-of-work difficulty was
 * the only reason, `challenge_unreadable` when nothing could be read, else `payment_refused`.
 */
function refusalError(refusals: Refusal[], status: number): TollboothError {
  const readable = refusals.filter((r) => r.reason !== "unreadable");
  const message = refusals.map((r) => r.message).join("; ");
  if (readable.length === 0) return new TollboothError("challenge_unreadable", message, status);
  if (readable.every((r) => r.reason === "too_hard"))
    return new TollboothError("challenge_too_hard", readable.map((r) => r.message).join("; "), status);
  return new TollboothError("payment_refused", readable.map((r) => r.message).join("; "), status);
}

/** One call: `run()` resolves with the first answer that is not tollbooth's 429 or challenge. */
export class Call {
  private readonly resolver: Resolver;
  private readonly url: string | URL;
  private readonly init: RequestInit;
  private readonly origin: string;
  /** The request's own headers, before any tollbooth credential. */
  private readonly requestHeaders: Headers;
  /** What was kept and sent with the last request (undefined: nothing kept, or a fresh proof). */
  private sent: Kept | undefined;
  private res!: Response;
  /** A 429 was waited since the last fresh proof. */
  private waited = false;
  /** The payer whose fresh proof or credential was sent: another refusal ends the call. */
  private redeemedBy: Payer | undefined;
  /** The headers of the fresh proof last sent, until an answer other than 429. */
  private unanswered: Record<string, string> | undefined;
  /** Fresh challenges taken again after a refusal in this call. */
  private resolves = 0;

  constructor(resolver: Resolver, url: string | URL, init: RequestInit) {
    this.resolver = resolver;
    this.url = url;
    this.init = init;
    this.origin = new URL(String(url)).origin;
    this.requestHeaders = new Headers(init.headers);
  }

  /** @throws TollboothError — see `TollboothErrorCode` (the resolver's codes) */
  async run(): Promise<Response> {
    this.sent = this.resolver.kept.usable(this.origin);
    await this.send({}, this.sent);
    for (;;) {
      if (this.res.status === 429) {
        await this.waitAndRetry();
        continue;
      }
      this.unanswered = undefined;
      if (!(await this.isChallenge())) return this.res;
      await this.checkRedemption();
      this.resolver.kept.drop(this.origin, this.sent);
      const taken = await this.choose();
      if (!replayable(this.init.body))
        throw new TollboothError("body_not_replayable", "cannot retry a streamed request body", this.res.status);
      await this.res.body?.cancel();
      await this.take(taken);
    }
  }

  /** Send the request with `credential` (what is kept, or a fresh one) and `extra` headers; read what the answer says about what is kept. */
  private async send(extra: Record<string, string>, credential: Kept | undefined): Promise<void> {
    const headers = new Headers(this.init.headers);
    for (const [k, v] of Object.entries(headersOf(credential, this.requestHeaders))) headers.set(k, v);
    for (const [k, v] of Object.entries(extra)) headers.set(k, v);
    this.res = await this.resolver.fetch(this.url, { ...this.init, headers });
    this.resolver.kept.remember(this.origin, this.res, credential);
  }

  /** A 429: wait its `Retry-After` once (a second 429 ends the call) and send again. */
  private async waitAndRetry(): Promise<void> {
    const { maxWaitSeconds } = this.resolver;
    if (this.waited) throw new TollboothError("rate_limited", "rate limited again after waiting Retry-After", 429);
    const retryAfter = Number(this.res.headers.get("retry-after"));
    if (!Number.isInteger(retryAfter) || retryAfter < 0 || retryAfter > maxWaitSeconds) {
      throw new TollboothError(
        "rate_limited",
        `rate limited: Retry-After ${this.res.headers.get("retry-after") ?? "absent"} exceeds ${maxWaitSeconds} s`,
        429,
      );
    }
    if (!replayable(this.init.body)) throw new TollboothError("body_not_replayable", "cannot retry a streamed request body", 429);
    await this.res.body?.cancel();
    await sleep(retryAfter * 1000, this.resolver.signal);
    this.waited = true;
    // A 429 answering a fresh proof comes from a ceiling in front of redemption (the caller's
    // `ceiling`, the network ceiling): nothing was redeemed, so the same proof is sent again —
    // without it the retry meets a 402 and the call ends as `challenge_refused`. A token kept
    // meanwhile (minted with that 429, or by a concurrent call) is preferred; a proof the
    // gateway did redeem is refused as before.
    this.sent = this.resolver.kept.usable(this.origin);
    await this.send(this.sent ? {} : (this.unanswered ?? {}), this.sent);
  }

  /** Whether the answer is a tollbooth challenge: a 402, or a 401 refusing a payer's credential (any other 401 is the origin's). */
  private async isChallenge(): Promise<boolean> {
    const status = this.res.status;
    if (status === 401) return claimed401(await refusalReason(this.res));
    return status === 402;
  }

  /**
   * After a fresh proof or credential was sent, a challenge is its refusal: the call ends
   * (`challenge_refused`), unless its payer renews on the 402's reason (at most
   * `MAX_RESOLVES` times a call).
   */
  private async checkRedemption(): Promise<void> {
    const payer = this.redeemedBy;
    if (!payer) return;
    const status = this.res.status;
    const again =
      payer.renewOn.length > 0 &&
      status === 402 &&
      this.resolves < MAX_RESOLVES &&
      payer.renewOn.includes((await refusalReason(this.res)) ?? "");
    if (!again) throw new TollboothError("challenge_refused", `the gateway refused the ${payer.proof}: ${await this.res.text()}`, status);
    this.resolves++;
    this.redeemedBy = undefined;
  }

  /**
   * The first offered challenge a payer of `pay` accepts, payers in `pay` order.
   * @throws TollboothError `challenge_unreadable`, `challenge_too_hard` or `payment_refused`
   *   when none does
   */
  private async choose(): Promise<Taken> {
    const { payers } = this.resolver;
    const res = this.res;
    const status = res.status;
    const header = res.headers.get(WWW_AUTHENTICATE_HEADER) ?? "";
    const challenges = parseChallengesWithText(header) ?? [];
    const body = payers.some((p) => p.readsBody) ? await jsonBody(res) : undefined;
    const response: ChallengeResponse = { url: String(this.url), status, headers: res.headers, challenges, body };
    const offers: OfferedChallenge[][] = payers.map((p) => p.offered(response));
    if (challenges.length === 0 && offers.every((o) => o.length === 0)) {
      throw new TollboothError(
        "challenge_unreadable",
        `${status} without a challenge the resolver can read: ${header || "no WWW-Authenticate"}`,
        status,
      );
    }
    const context = { url: String(this.url), origin: this.origin, requestHeaders: this.requestHeaders };
    const refusals: Refusal[] = [];
    for (const [i, payer] of payers.entries()) {
      for (const challenge of offers[i]!) {
        const choice = payer.choose(challenge, context);
        if (choice.ok) return { way: choice.way, payer };
        refusals.push(choice);
      }
    }
    if (refusals.length === 0) {
      throw new TollboothError(
        "challenge_unreadable",
        `${status} without a challenge of a scheme the resolver may take (pay: ${payers.map((p) => p.name).join(", ")}): ${header}`,
        status,
      );
    }
    throw refusalError(refusals, status);
  }

  /** Obtain the way's proof (sent once) or credential (kept for the origin) and send the request again with it. */
  private async take({ way, payer }: Taken): Promise<void> {
    this.redeemedBy = payer;
    if (way.kind === "once") {
      const extra = await way.obtain();
      this.sent = undefined;
      this.unanswered = extra;
      this.waited = false; // the proof's own 429, if any, is waited once too (at most two waits a call)
      await this.send(extra, undefined);
    } else {
      const credential = await this.resolver.kept.buy(this.origin, way);
      this.sent = this.resolver.kept.keepBought(this.origin, credential);
      await this.send({}, this.sent);
    }
  }
}
