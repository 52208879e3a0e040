/**
 * The request state the steps of `decide()` (./decide.ts) pass along: each step takes one
 * state and returns the next (or a `Refusal`), so what a step knows is in its argument's
 * type. The decision record's fields (workers/observe/) are accumulated in `record`, in the
 * order the steps learn them; the adapter (./middleware.ts) hands them to observe.
 */
import type { Keyring } from "../../shared/credentials/keys.ts";
import type { TokenClaims } from "../../shared/credentials/token.ts";
import type { Identity } from "../../shared/identity/index.ts";
import type { ParsedBody } from "../../shared/jsonrpc.ts";
import type { Congestion } from "../../shared/limits/congestion.ts";
import type { LeaseAdmission } from "../../shared/limits/lease.ts";
import type { AdmissionClass } from "../../shared/limits/origin-classes.ts";
import type { Plan } from "../../shared/policy/index.ts";
import type { AdmitRequest, AdmitResult, SlotRequest } from "../objects/caller-state.ts";
import type { Receipt } from "../objects/origin-shards.ts";
import type { CallerStore } from "../objects/stores.ts";
import type { DecisionFields } from "../observe/observe.ts";
import type { Refusal } from "../refusal/refusal.ts";
import type { PaymentScheme, Redeemable, Settled } from "../schemes/contract.ts";

/** Work to run after the response (the Worker's `waitUntil`); its failure is logged as `tollbooth: <what> failed`. */
export type Defer = (what: string, promise: Promise<unknown>) => void;

/** What `decide()` runs in, for one request: no framework, only the request and a way to defer work. */
export interface RequestContext {
  request: Request;
  /** `request.url`, parsed. */
  url: URL;
  defer: Defer;
}

/** The decision record's fields the steps learn (workers/observe/observe.ts `DecisionFields`). */
export type RecordFields = DecisionFields;

/**
 * Add `fields` to a state's record, skipping undefined values as `note()` does: a key keeps
 * the place it was first given, so the log line reads in the order the steps learned it.
 */
export function record(s: { record: RecordFields }, fields: RecordFields): void {
  const into = s.record as Record<string, unknown>;
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) into[k] = v;
}

/** The request as it arrived: until the identity is known, its network's (an `ip:` caller). */
export interface Arrival {
  ctx: RequestContext;
  request: Request;
  url: URL;
  /** `ip:<network>` (shared/identity/index.ts `networkFor`). */
  network: string;
  record: RecordFields;
}

/** After one reading of the body (./body.ts). */
export interface Read extends Arrival {
  /** Whether the path is the MCP endpoint (normalized, as the origin may route it). */
  isEndpoint: boolean;
  /** The raw body, read once (null when there was none). */
  rawBody: Uint8Array<ArrayBuffer> | null;
  /** The JSON-RPC body of a POST to the endpoint, else null. */
  body: ParsedBody | null;
  /** Unix ms, read after the whole body arrived. */
  nowMs: number;
}

/** After identity (./identity.ts): who is calling, its plan, what the request costs. */
export interface Known extends Read {
  identity: Identity;
  /** The caller's plan, its challenge's difficulty raised by the congestion's extra bits. */
  plan: Plan;
  /** The origin's congestion when the request arrived (docs/allocation.md); null without an origin ceiling. */
  congestion: Congestion | null;
  /** Units the request costs (integer ≥ 0). */
  cost: number;
  keyring: Keyring;
}

/** What the request's credential (a scheme's, or an access token) brought (./credentials.ts). */
export interface Credential {
  /** Whether the request carries one (a credential never goes unmetered). */
  carried: boolean;
  /** Its scheme's `type`, or `token`: the record's `scheme`. */
  via?: string;
  /** What pays when it is admitted with it: its scheme's `prefix`, or `token`. */
  paidAs?: string;
  /** The access token to sign when its redemption mints one. */
  tokenClaims?: TokenClaims;
  /** The scheme that refused it (its refusal's status). */
  refusedBy?: PaymentScheme;
  /** What a payment service said when it refused it (`error.data.detail`). */
  refusedDetail?: string;
  /** A payment to complete once the caller's object holds its redemption (./settlement.ts). */
  settlement?: { scheme: PaymentScheme; credential: unknown };
  /** What its payment was, for the metrics. */
  payment?: Redeemable["paid"];
  /** The admission class at the origin ceiling of a credential that verified: bought with money (`paid`) or work (`worked`). */
  cls?: "paid" | "worked";
  /** The body to forward: the credential taken out when it was in it. */
  forwardBody: Uint8Array<ArrayBuffer> | null;
}

/** After credentials (./credentials.ts): whose request it is and what to ask the caller's object. */
export interface Carrying extends Known {
  /** The caller: the identity, or the payer a payment or a payer's token names. */
  caller: string;
  credential: Credential;
  /** The session or stream slot the request opens, if any. */
  slot: SlotRequest | undefined;
  /** What the caller's object decides on. */
  admit: AdmitRequest;
}

/** After the origin ceiling (./origin-ceiling.ts): the request's class and the units of the ceiling it holds. */
export interface Metered extends Carrying {
  /** Its admission class at the origin ceiling (shared/limits/origin-classes.ts). */
  cls: AdmissionClass;
  /** The origin ceiling's units it holds (one per JSON-RPC message); null without an origin ceiling. */
  origin: Receipt | null;
}

/** The failures of the caller's object that `onStoreError: "open"` forwards unmetered (workers/objects/stores.ts `StoreFailure`). */
export type OpenFailure = "timeout" | "unreachable";

/**
 * After admission (./admission.ts), when the caller's object timed out or could not be
 * reached and the policy says `onStoreError: "open"`: forwarded unmetered.
 */
export type Unmetered = Metered & { readonly unmetered: OpenFailure };

/** After admission (./admission.ts): the caller's object (or this isolate's lease) admitted it. */
export interface Admitted extends Metered {
  /** The caller's object. */
  store: CallerStore;
  decision: AdmitResult;
  /** Set when admitted from this isolate's lease (no Durable Object call). */
  local: LeaseAdmission | null;
  /** Headers every answer to the request carries: rate-limit fields, a minted token, its credits. */
  headers: Record<string, string>;
}

/** After settlement (./settlement.ts): cleared for the origin. */
export interface Cleared extends Admitted {
  /** A payment's receipt for the MCP result's `_meta`. */
  receipt?: Settled["receipt"];
}

/** How `decide()` ended for a request. */
export type Outcome =
  /** Refused on the endpoint (a JSON-RPC error; `body` for the ids). */
  | { kind: "refused"; refusal: Refusal; body: ParsedBody | null; record: RecordFields }
  /** Answered by tollbooth's own endpoints. */
  | { kind: "answered"; response: Response; record: RecordFields }
  /** Forwarded without metering: the caller's object failed and the policy says `onStoreError: "open"`. */
  | { kind: "unmetered"; state: Carrying; record: RecordFields }
  /** Admitted: forward it. */
  | { kind: "admitted"; state: Cleared; record: RecordFields };
