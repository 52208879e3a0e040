/**
 * What a resolver keeps per gateway origin between calls: the access token the gateway
 * minted (`Tollbooth-Token`, after a solve or a payment in credits mode) or a reusable
 * credential a payer bought, until it expires or `Tollbooth-Credits` reaches 0; and the
 * credentials being bought, so that concurrent 402s to one origin pay once.
 */
import { fromBase64Url } from "../../../../shared/wire/encoding.ts";
import { CREDITS_HEADER, TOKEN_HEADER } from "../../../../shared/wire/headers.ts";
import type { ReusableCredential, Way } from "../payers/payer.ts";

/** What is kept per gateway origin: an access token, or a paid reusable credential. */
export type Kept =
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

/** Milliseconds of margin before a token's expiry at which it is no longer sent. */
const EXPIRY_MARGIN_MS = 2_000;

/** The `exp` of an access token (its third dot-separated part, base64url JSON), unix milliseconds; 0 when unreadable. */
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

/** The headers carrying `kept` on a request whose own headers are `requestHeaders` (none for `undefined`). */
export function headersOf(kept: Kept | undefined, requestHeaders: Headers): Record<string, string> {
  if (kept?.kind === "token") return { [TOKEN_HEADER]: kept.token };
  if (kept?.kind === "credential") return kept.credential.headersFor(requestHeaders);
  return {};
}

/** The kept tokens and credentials of one resolver, per gateway origin (`scheme://host:port`). */
export class KeptCredentials {
  private readonly kept = new Map<string, Kept>();
  /** Credentials being bought, per origin: a concurrent 402 waits for it instead of paying again. */
  private readonly buying = new Map<string, Promise<ReusableCredential>>();

  /** What is kept for `origin` if it may still be sent (not about to expire, credits left); drops it otherwise. */
  usable(origin: string): Kept | undefined {
    const k = this.kept.get(origin);
    if (!k) return undefined;
    if (Date.now() < k.expiresMs - EXPIRY_MARGIN_MS && k.credits > 0) return k;
    this.kept.delete(origin);
    return undefined;
  }

  /**
   * Read the answer to a request that carried `sent`: keep a minted `Tollbooth-Token`, or
   * update the credits left of what was sent (dropping it at 0).
   */
  remember(origin: string, res: Response, sent: Kept | undefined): void {
    const minted = res.headers.get(TOKEN_HEADER);
    const credits = res.headers.get(CREDITS_HEADER);
    const current = this.kept.get(origin);
    if (minted) {
      this.kept.set(origin, {
        kind: "token",
        token: minted,
        expiresMs: tokenExpiryMs(minted),
        credits: credits === null ? Infinity : Number(credits),
      });
    } else if (credits !== null && current && (current === sent || (sent === undefined && current.kind === "token"))) {
      current.credits = Number(credits);
      if (!(current.credits > 0)) this.kept.delete(origin);
    }
  }

  /** `sent` was refused (or spent): drop it, unless something newer was kept meanwhile. */
  drop(origin: string, sent: Kept | undefined): void {
    if (sent && this.kept.get(origin) === sent) this.kept.delete(origin);
  }

  /** Obtain a reusable credential for `origin`; one at a time per origin: a second buyer gets the first's. */
  buy(origin: string, way: Extract<Way, { kind: "credential" }>): Promise<ReusableCredential> {
    const inFlight = this.buying.get(origin);
    if (inFlight) return inFlight;
    const promise = way.obtain().finally(() => this.buying.delete(origin));
    this.buying.set(origin, promise);
    return promise;
  }

  /** Keep a bought `credential` for `origin` at once (concurrent calls reuse it instead of paying again); returns what is kept. */
  keepBought(origin: string, credential: ReusableCredential): Kept {
    const current = this.kept.get(origin);
    if (current?.kind === "credential" && current.credential === credential) return current;
    const kept: Kept = { kind: "credential", credential, expiresMs: credential.expiresMs, credits: Infinity };
    this.kept.set(origin, kept);
    return kept;
  }
}
