/**
 * The over-budget answer, as a `Refusal` (./refusal.ts): 402 Payment Required with one
 * challenge per enabled payment scheme (workers/schemes/), or 401 for a payment credential
 * that did not verify (a scheme whose rule says so), or 429 in a plan's 429 mode. The wire
 * contract is in docs/wire-contract.md §1, §10–11; tests in
 * test/workers/refusal/over-budget.test.ts and the paid schemes' workers tests pin it.
 */
import { ErrorCode, type ParsedBody } from "../../shared/jsonrpc.ts";
import { congestionData } from "../../shared/limits/congestion.ts";
import { gatewayUrls } from "../endpoints/urls.ts";
import type { Decision } from "../observe/types.ts";
import type { Offer, OfferContext, PaymentScheme, Unavailable } from "../schemes/contract.ts";
import { schemeOfType } from "../schemes/registry.ts";
import { Refusal } from "./refusal.ts";

/**
 * What a request is, for messages: `tools/call expensive`, `resources/read file:///x`,
 * `a batch of 3 messages`, or `GET /path`.
 */
export function describeRequest(method: string, path: string, body: ParsedBody | null): string {
  if (!body) return `${method} ${path}`;
  if (body.batch) return `a batch of ${body.messages.length} messages`;
  const m = body.messages[0]!;
  if (m.method === undefined) return "a JSON-RPC response";
  return m.name !== undefined ? `${m.method} ${m.name}` : m.method;
}

/** An offer or an unavailable scheme as listed in `error.data.challenges`. */
function listed(o: Offer | Unavailable): Record<string, unknown> {
  return o.ok ? o.json : { type: o.type, unavailable: true, reason: o.reason, message: o.message };
}

/** `text` with its first letter lowercased (hints joined into one sentence). */
function lower(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** What the over-budget answer is built from. */
export interface OverBudget {
  schemes: readonly PaymentScheme[];
  /** The context the schemes offer in: the caller, plan, keyring, clock, difficulty (bits), and the request's URL, what it is, its cost and why it is refused. */
  offer: OfferContext;
  /** The parsed request body (a tool result answers its single `tools/call`). */
  body: ParsedBody | null;
  /** Whole seconds until the free bucket would admit the request. */
  retryAfterSeconds: number;
  /** The caller's decayed count of recent solves (why the difficulty rose). */
  solves?: number | undefined;
  /** Rate-limit headers (and a token the request bought) to send. */
  headers: Record<string, string>;
  status?: 401 | 402 | 503;
  /** Extra `error.data` fields (e.g. a payment service's `detail`). */
  detail?: Record<string, unknown>;
  /** Access-token credits left, for the decision record. */
  credits?: number | undefined;
  /**
   * Where the origin's congestion refused the request (docs/allocation.md): `origin` (its
   * class had no room at the origin ceiling: the message says so) or `budget` (a free
   * request, its budget shrunk by the free share). `error.data.congestion` is sent then, and
   * whenever the load level is above the curve's start.
   */
  refusedAt?: "origin" | "budget" | undefined;
}

/** `error.data.congestion` of an answer, when the origin is congested or refused it; null otherwise. */
function congestionOf(o: OverBudget): Record<string, unknown> | null {
  const c = o.offer.congestion;
  if (!c || (o.refusedAt !== "origin" && c.level <= o.offer.policy.allocation.congestion.start)) return null;
  return congestionData(c, o.refusedAt ?? null);
}

/**
 * The refusal, recorded with the reason, the difficulty offered and the credits left, as the
 * decision its status is (401/402 and a tool result: payment required).
 */
function refusal(o: OverBudget, init: Omit<ConstructorParameters<typeof Refusal>[0], "reason" | "code">): Refusal {
  const { reason, difficulty } = o.offer;
  const { status } = init;
  const decision: Decision =
    status === 429 ? "rate_limited" : status === 503 ? "unavailable" : status === 400 ? "bad_request" : "payment_required";
  return new Refusal({
    ...init,
    code: reason,
    reason: { decision, reason, difficulty, ...(o.credits !== undefined ? { credits: o.credits } : {}) },
  });
}

/**
 * The over-budget answer, with fresh challenges bound to the caller: one per enabled scheme
 * whose payment buys at least `cost`, in the policy's `offerOrder`, each in its own
 * `WWW-Authenticate` field line and in `error.data.challenges` (an unavailable scheme is
 * listed there as `{ type, unavailable: true, reason, message }`).
 * - 402 (`error.code` 402), or 401 (`error.code` 401) when `status` is 401 (a refused
 *   credential of a scheme whose rule says so);
 * - in the plan's 429 mode, 429 with an exact integer `Retry-After` and the challenges only
 *   in `error.data` (no `WWW-Authenticate`);
 * - a request that no payment can buy (costs more than every scheme's credits), or when
 *   no scheme can be offered now, gets 429 with the wait and no challenge;
 * - one costing more than the free bucket holds gets no `Retry-After` (waiting never admits
 *   it), and in 429 mode a 400 (a client that only waits would loop);
 * - 503 when a payment service did not answer (`status` 503).
 */
export async function overBudget(o: OverBudget): Promise<Refusal> {
  const { plan, reason, cost, what } = o.offer;
  const status = o.status ?? 402;
  if (status === 503) {
    // A payment service did not answer: nothing was decided about the payment; retry.
    return refusal(o, {
      status: 503,
      rpcCode: ErrorCode.Unavailable,
      message: `Service unavailable (${reason}): the payment could not be checked; retry`,
      data: { reason, ...o.detail },
      headers: o.headers,
      retryAfter: 1,
    });
  }
  const mode429 = plan.overBudget === "429" && status !== 401;
  // Invariant: a Retry-After is only sent when waiting can help (the bucket can hold the cost).
  if (cost > plan.bucket.capacity && mode429) {
    // 429 mode is for clients that only wait: one that waiting never admits gets an error, not a loop.
    return refusal(o, {
      status: 400,
      rpcCode: ErrorCode.InvalidRequest,
      message: `Invalid Request: ${what} costs ${cost}, more than the free bucket ever holds (${plan.bucket.capacity}, plan ${plan.name}): send fewer messages per batch`,
      data: { reason, cost, maxCost: plan.bucket.capacity, plan: plan.name },
    });
  }
  // Only a scheme whose one payment covers the whole request is offered (else the caller pays and still loops),
  // in the policy's `offerOrder` (clients that read only the first challenge take the operator's choice).
  const order = o.offer.policy.offerOrder;
  const payable = o.schemes.filter((s) => s.credits(plan) >= cost).sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type));
  const offers = await Promise.all(payable.map((s) => s.offer(o.offer)));
  const available = offers.filter((x): x is Offer => x.ok);
  const retryAfter = Math.max(mode429 ? 1 : 0, o.retryAfterSeconds);
  if (available.length === 0) {
    const wait = Math.max(1, retryAfter);
    const why = payable.length === 0 ? `more than a solve buys (${plan.challenge.credits})` : "and no way to pay is available now";
    // Refused at the origin: no way up could be offered (a payment backend down or busy).
    const origin = o.refusedAt === "origin" ? congestionOf(o) : null;
    const when = origin ? `; ${origin.why}` : ", when the free bucket holds it";
    const message = `Too many requests (${reason}): ${what} costs ${cost}, ${why}; retry after ${wait} s${when}.`;
    const data = {
      reason,
      layer: origin ? "origin" : "bucket",
      cost,
      retryAfter: wait,
      ...(origin ? { congestion: origin } : {}),
      ...(offers.length ? { challenges: offers.map(listed) } : {}),
    };
    return refusal(o, { status: 429, rpcCode: ErrorCode.TooManyRequests, message, data, headers: o.headers, retryAfter: wait });
  }
  return withOffers(o, status, mode429, retryAfter, offers, available);
}

/** The answer when some scheme can be offered: an MCP tool result, the 429-mode answer, or the 402 / 401. */
function withOffers(
  o: OverBudget,
  status: 401 | 402,
  mode429: boolean,
  retryAfter: number,
  offers: ReadonlyArray<Offer | Unavailable>,
  available: readonly Offer[],
): Refusal {
  const { plan, reason, cost, what, difficulty, url } = o.offer;
  const waitHelps = cost <= plan.bucket.capacity;
  // Why, what it costs, the wait, the difficulty (and why it rose), the challenges, the gateway's URLs.
  const base = plan.challenge.difficulty;
  const raised =
    difficulty > base
      ? {
          difficultyRaised: {
            base,
            current: difficulty,
            recentSolves: o.solves ?? 0,
            why: `${o.solves ?? 0} recent solves (decaying with a half-life of ${plan.challenge.adaptive.halfLifeSeconds} s): +1 bit per ${plan.challenge.adaptive.solvesPerStep}`,
          },
        }
      : {};
  const congestion = congestionOf(o);
  const data = {
    reason,
    ...o.detail,
    plan: plan.name,
    cost,
    retryAfter: waitHelps ? retryAfter : null,
    difficulty,
    ...raised,
    ...(congestion ? { congestion } : {}),
    challenges: offers.map(listed),
    ...gatewayUrls(url),
  };
  // Headers a scheme signals itself with (its own challenge header), in every mode.
  const headers: Record<string, string> = { ...o.headers, ...Object.assign({}, ...available.map((x) => x.headers ?? {})) };
  if (status === 402) {
    const tool = toolResult(o.schemes, o.body, available, data);
    if (tool) return refusal(o, { status: 402, rpcCode: ErrorCode.PaymentRequired, message: "", result: tool, headers });
  }
  const hint = available.map((x, i) => (i === 0 ? x.hint : lower(x.hint))).join("; or ");
  if (mode429) {
    const why = o.refusedAt === "origin" ? `; ${congestion!.why}` : " and the caller's budget is spent";
    const message = `Too many requests (${reason}): ${what} costs ${cost}${why}. Retry after ${retryAfter} s; or ${lower(hint)}.`;
    return refusal(o, {
      status: 429,
      rpcCode: ErrorCode.TooManyRequests,
      message,
      data: { ...data, layer: o.refusedAt === "origin" ? "origin" : "bucket" },
      headers,
      retryAfter,
    });
  }
  const lead =
    status === 401
      ? `Unauthorized (${reason}): the payment credential was refused; ${what} costs ${cost}.`
      : `Payment required (${reason}): ${what} costs ${cost}`;
  const message =
    status === 401
      ? `${lead} ${hint}${waitHelps ? `; or wait ${retryAfter} s` : ""}.`
      : o.refusedAt === "origin"
        ? `${lead}; ${congestion!.why}. ${hint}; or wait ${retryAfter} s.`
        : waitHelps
          ? `${lead} and the caller's budget is spent. ${hint}; or wait ${retryAfter} s.`
          : `${lead}, more than the free bucket ever holds (${plan.bucket.capacity}). ${hint}.`;
  // One field line per challenge (RFC 9110 §11.6.1), as Aperture sends them.
  const challenges = available.flatMap((x) => (x.challenge !== undefined ? [x.challenge] : []));
  return refusal(o, {
    status,
    rpcCode: status === 401 ? ErrorCode.Unauthorized : ErrorCode.PaymentRequired,
    message,
    data,
    headers,
    challenges,
    ...(waitHelps && status === 402 ? { retryAfter } : {}),
  });
}

/**
 * The over-budget answer to a single `tools/call` as an MCP tool result: the first available
 * offer whose scheme has that form (`PaymentScheme.toolResult`, present when the policy asks
 * for it) renders it.
 * @returns the JSON-RPC response, or null when the request is not a single `tools/call` or no scheme renders one
 */
function toolResult(
  schemes: readonly PaymentScheme[],
  body: ParsedBody | null,
  offers: readonly Offer[],
  data: Record<string, unknown>,
): Record<string, unknown> | null {
  const m = body && !body.batch ? body.messages[0] : undefined;
  if (m?.method !== "tools/call" || m.id === undefined) return null;
  for (const offer of offers) {
    const result = schemeOfType(schemes, offer.type)?.toolResult?.(offer, m.id, data);
    if (result) return result;
  }
  return null;
}
