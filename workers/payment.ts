/**
 * The over-budget answer: 402 Payment Required with one challenge per enabled payment
 * scheme (workers/schemes/), or 401 for a payment credential that did not verify (a scheme
 * whose rule says so), or
 * 429 in a plan's 429 mode. The wire contract is in docs/wire-contract.md §1, §10–11; tests
 * in test/workers/payment-required.test.ts and the paid schemes' workers tests pin it.
 */
import { ErrorCode, type ParsedBody } from "../shared/jsonrpc.ts";
import type { Plan } from "../shared/policy/index.ts";
import { WELL_KNOWN, WWW_AUTHENTICATE_HEADER } from "../shared/wire/headers.ts";
import { jsonRpcError } from "./responses.ts";
import type { Offer, OfferContext, PaymentScheme, Unavailable } from "./schemes/contract.ts";
import { schemeOfType } from "./schemes/registry.ts";

export { CREDITS_HEADER, SOLUTION_HEADER, TOKEN_HEADER, WELL_KNOWN } from "../shared/wire/headers.ts";

/** The gateway's own URLs, absolute, for a request URL. */
export function gatewayUrls(requestUrl: URL): { policyUrl: string; challengeUrl: string; verifyUrl: string; statusUrl: string } {
  const base = requestUrl.origin + WELL_KNOWN;
  return { policyUrl: base, challengeUrl: `${base}/challenge`, verifyUrl: `${base}/verify`, statusUrl: `${base}/status` };
}

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

/**
 * The over-budget answer, with fresh challenges bound to the caller: one per enabled scheme
 * whose payment buys at least `cost`, in the schemes' order, each in its own
 * `WWW-Authenticate` field line and in `error.data.challenges` (an unavailable scheme is
 * listed there as `{ type, unavailable: true, reason, message }`).
 * - 402 (`error.code` 402), or 401 (`error.code` 401) when `status` is 401 (a refused
 *   credential of a scheme whose rule says so);
 * - in the plan's 429 mode, 429 with an exact integer `Retry-After` and the challenges only
 *   in `error.data` (no `WWW-Authenticate`);
 * - a request that no payment can buy (costs more than every scheme's credits), or when
 *   no scheme can be offered now, gets 429 with the wait and no challenge;
 * - one costing more than the free bucket holds gets no `Retry-After` (waiting never admits
 *   it), and in 429 mode a 400 (a client that only waits would loop).
 * @param retryAfterSeconds whole seconds until the free bucket would admit the request
 * @param offer the context the schemes offer in (caller, plan, keyring, clock, difficulty in bits)
 * @param solves the caller's decayed count of recent solves (why the difficulty rose)
 * @param headers rate-limit headers to add
 */
export async function paymentRequired(opts: {
  schemes: readonly PaymentScheme[];
  offer: OfferContext;
  url: URL;
  body: ParsedBody | null;
  what: string;
  reason: string;
  cost: number;
  retryAfterSeconds: number;
  solves?: number | undefined;
  headers: Record<string, string>;
  status?: 401 | 402 | 503;
  /** Extra `error.data` fields (e.g. a payment service's `detail`). */
  detail?: Record<string, unknown>;
}): Promise<Response> {
  const plan: Plan = opts.offer.plan;
  const status = opts.status ?? 402;
  if (status === 503) {
    // A payment service did not answer: nothing was decided about the payment; retry.
    return jsonRpcError(503, opts.body, ErrorCode.Unavailable, `Service unavailable (${opts.reason}): the payment could not be checked; retry`, { reason: opts.reason, ...opts.detail }, { ...opts.headers, "retry-after": "1" });
  }
  const mode429 = plan.overBudget === "429" && status !== 401;
  const retryAfter = Math.max(mode429 ? 1 : 0, opts.retryAfterSeconds);
  // Invariant: a Retry-After is only sent when waiting can help (the bucket can hold the cost).
  const waitHelps = opts.cost <= plan.bucket.capacity;
  if (!waitHelps && mode429) {
    // 429 mode is for clients that only wait: one that waiting never admits gets an error, not a loop.
    return jsonRpcError(400, opts.body, ErrorCode.InvalidRequest, `Invalid Request: ${opts.what} costs ${opts.cost}, more than the free bucket ever holds (${plan.bucket.capacity}, plan ${plan.name}): send fewer messages per batch`, { reason: opts.reason, cost: opts.cost, maxCost: plan.bucket.capacity, plan: plan.name });
  }
  // Only a scheme whose one payment covers the whole request is offered (else the caller pays and still loops).
  const payable = opts.schemes.filter((s) => s.credits(plan) >= opts.cost);
  const offers = await Promise.all(payable.map((s) => s.offer(opts.offer)));
  const available = offers.filter((o): o is Offer => o.ok);
  if (available.length === 0) {
    const wait = Math.max(1, retryAfter);
    const why = payable.length === 0 ? `more than a solve buys (${plan.challenge.credits})` : "and no way to pay is available now";
    const message = `Too many requests (${opts.reason}): ${opts.what} costs ${opts.cost}, ${why}; retry after ${wait} s, when the free bucket holds it.`;
    return jsonRpcError(429, opts.body, ErrorCode.TooManyRequests, message, { reason: opts.reason, layer: "bucket", cost: opts.cost, retryAfter: wait, ...(offers.length ? { challenges: offers.map(listed) } : {}) }, { ...opts.headers, "retry-after": String(wait) });
  }
  const { difficulty } = opts.offer;
  const base = plan.challenge.difficulty;
  const raised = difficulty > base
    ? { difficultyRaised: { base, current: difficulty, recentSolves: opts.solves ?? 0, why: `${opts.solves ?? 0} recent solves (decaying with a half-life of ${plan.challenge.adaptive.halfLifeSeconds} s): +1 bit per ${plan.challenge.adaptive.solvesPerStep}` } }
    : {};
  const data = { reason: opts.reason, ...opts.detail, plan: plan.name, cost: opts.cost, retryAfter: waitHelps ? retryAfter : null, difficulty, ...raised, challenges: offers.map(listed), ...gatewayUrls(opts.url) };
  // Headers a scheme signals itself with (its own challenge header), in every mode.
  const schemeHeaders: Record<string, string> = Object.assign({}, ...available.map((o) => o.headers ?? {}));
  if (status === 402) {
    const tool = toolResult(opts.schemes, opts.body, available, data);
    if (tool) return new Response(JSON.stringify(tool), { status: 200, headers: { "content-type": "application/json", "cache-control": "no-store", ...opts.headers, ...schemeHeaders } });
  }
  const hint = available.map((o, i) => (i === 0 ? o.hint : lower(o.hint))).join("; or ");
  if (mode429) {
    const message = `Too many requests (${opts.reason}): ${opts.what} costs ${opts.cost} and the caller's budget is spent. Retry after ${retryAfter} s; or ${lower(hint)}.`;
    return jsonRpcError(429, opts.body, ErrorCode.TooManyRequests, message, { ...data, layer: "bucket" }, { ...opts.headers, ...schemeHeaders, "retry-after": String(retryAfter) });
  }
  const lead = status === 401 ? `Unauthorized (${opts.reason}): the payment credential was refused; ${opts.what} costs ${opts.cost}.` : `Payment required (${opts.reason}): ${opts.what} costs ${opts.cost}`;
  const message = status === 401
    ? `${lead} ${hint}${waitHelps ? `; or wait ${retryAfter} s` : ""}.`
    : waitHelps
      ? `${lead} and the caller's budget is spent. ${hint}; or wait ${retryAfter} s.`
      : `${lead}, more than the free bucket ever holds (${plan.bucket.capacity}). ${hint}.`;
  const res = jsonRpcError(status, opts.body, status === 401 ? ErrorCode.Unauthorized : ErrorCode.PaymentRequired, message, data, {
    ...opts.headers,
    ...schemeHeaders,
    ...(waitHelps && status === 402 ? { "retry-after": String(retryAfter) } : {}),
  });
  // One field line per challenge (RFC 9110 §11.6.1), as Aperture sends them.
  for (const o of available) if (o.challenge !== undefined) res.headers.append(WWW_AUTHENTICATE_HEADER, o.challenge);
  return res;
}

/**
 * The over-budget answer to a single `tools/call` as an MCP tool result: the first available
 * offer whose scheme has that form (`PaymentScheme.toolResult`, present when the policy asks
 * for it) renders it.
 * @returns the JSON-RPC response, or null when the request is not a single `tools/call` or no scheme renders one
 */
function toolResult(schemes: readonly PaymentScheme[], body: ParsedBody | null, offers: readonly Offer[], data: Record<string, unknown>): Record<string, unknown> | null {
  const m = body && !body.batch ? body.messages[0] : undefined;
  if (!m || m.method !== "tools/call" || m.id === undefined) return null;
  for (const offer of offers) {
    const result = schemeOfType(schemes, offer.type)?.toolResult?.(offer, m.id, data);
    if (result) return result;
  }
  return null;
}
