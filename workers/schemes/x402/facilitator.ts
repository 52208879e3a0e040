/**
 * tollbooth's x402 facilitator client: `POST {url}/verify` and `POST {url}/settle` of x402 v2
 * (x402-foundation `specs/x402-specification-v2.md` §7, "Facilitator interface"), sent as
 * `@x402/core`'s `HTTPFacilitatorClient` sends them — the same JSON body
 * `{ x402Version, paymentPayload, paymentRequirements }`, `Content-Type: application/json`, the
 * operator's `Authorization` value when it has one — and their answers read the same way:
 * a 2xx answer must be the spec's `VerifyResponse` / `SettleResponse`; a non-2xx answer whose
 * JSON body carries `isValid` (`/verify`) or `success` (`/settle`) is the facilitator's
 * verdict (its `VerifyError` / `SettleError`); anything else is no answer.
 *
 * Its own (not `HTTPFacilitatorClient`) for two reasons: `@x402/core/http` loads its zod 3
 * schemas at module load (60 KiB of the Worker's bundle), and it calls the global `fetch`
 * where the gateway injects its own. Every call is bounded by `timeoutMs`, reading the body
 * included, even when an injected `fetch` ignores the abort signal.
 */
import type { PaymentPayload, PaymentRequirements, SettleResponse } from "@x402/core/types";

/** What `/verify` answered: the payment is valid, or why not (the facilitator's `invalidReason`). */
export interface VerifyAnswer {
  isValid: boolean;
  /** The facilitator's reason code when invalid (e.g. `invalid_exact_evm_payload_authorization_valid_before`). */
  invalidReason?: string;
  /** The payer the facilitator found, `0x` address. */
  payer?: string;
}

/**
 * - `unreachable`: no HTTP answer (connection refused, DNS, TLS), or the body broke off
 * - `timeout`: no complete answer within `timeoutMs`
 * - `bad_response`: an answer that is neither the spec's response nor a verdict (`status` says which HTTP status)
 */
export type FacilitatorErrorCode = "unreachable" | "timeout" | "bad_response";

/** The facilitator gave no usable answer: `code` says how, `status` the HTTP status seen (if any). */
export class FacilitatorError extends Error {
  readonly code: FacilitatorErrorCode;
  readonly status: number | undefined;

  constructor(code: FacilitatorErrorCode, message: string, status?: number) {
    super(message);
    this.name = "FacilitatorError";
    this.code = code;
    this.status = status;
  }
}

/** The two calls the x402 scheme makes. */
export interface FacilitatorClient {
  /**
   * `POST /verify`: whether the facilitator finds `payload` a valid payment of `requirements`.
   * @throws FacilitatorError when it gives no usable answer within the timeout
   */
  verify(payload: PaymentPayload, requirements: PaymentRequirements): Promise<VerifyAnswer>;
  /**
   * `POST /settle`: the facilitator submits the payment; its `SettleResponse` (`success` false
   * with `errorReason` when it refused). A timeout is indeterminate: it may still settle.
   * @throws FacilitatorError when it gives no usable answer within the timeout
   */
  settle(payload: PaymentPayload, requirements: PaymentRequirements): Promise<SettleResponse>;
}

/**
 * Options of {@link facilitatorClient}: `url` the facilitator's base URL (trailing slashes
 * ignored), `timeoutMs` the bound on each call in milliseconds, `authorization` the
 * `Authorization` header value sent with each call (none when undefined), `fetch` the `fetch` to call.
 */
export interface FacilitatorOptions {
  url: string;
  timeoutMs: number;
  authorization: string | undefined;
  fetch: typeof fetch;
}

type Json = Record<string, unknown>;

const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
/** Whether `v` is a string, or absent (`undefined` / `null`, which the spec's readers take as absent). */
const optionalString = (v: unknown): boolean => v == null || typeof v === "string";
/** The first 200 characters of an answer, for logs. */
const excerpt = (text: string): string => text.trim().replace(/\s+/g, " ").slice(0, 200) || "<empty response>";

/** A 2xx `/verify` answer as the spec's `VerifyResponse`, or null when it is not one. */
function verifyResponse(data: unknown): VerifyAnswer | null {
  if (!isRecord(data) || typeof data.isValid !== "boolean" || !optionalString(data.invalidReason) || !optionalString(data.payer))
    return null;
  return {
    isValid: data.isValid,
    ...(data.invalidReason != null ? { invalidReason: data.invalidReason as string } : {}),
    ...(data.payer != null ? { payer: data.payer as string } : {}),
  };
}

/**
 * A `/settle` answer as the spec's `SettleResponse` (its members only, in the spec's order,
 * absent ones left out), or null when it is not one. `verdict`: a non-2xx body, which needs
 * only `success`.
 */
function settleResponse(data: unknown, verdict: boolean): SettleResponse | null {
  if (!isRecord(data) || typeof data.success !== "boolean") return null;
  const strings = ["errorReason", "errorMessage", "payer", "transaction", "network", "amount"] as const;
  if (
    !strings.every((k) => optionalString(data[k])) ||
    !(data.extensions == null || isRecord(data.extensions)) ||
    !(data.extra == null || isRecord(data.extra))
  )
    return null;
  if (!verdict && (typeof data.transaction !== "string" || typeof data.network !== "string")) return null;
  const out: Json = { success: data.success };
  for (const k of ["errorReason", "errorMessage", "payer", "transaction", "network", "amount", "extensions", "extra"])
    if (data[k] != null) out[k] = data[k];
  return out as unknown as SettleResponse;
}

/**
 * POST `body` to `url` and read the JSON answer: `{ ok, status, data }`, `data` undefined
 * when the body is not JSON. The whole exchange (headers and body) is bounded by `timeoutMs`.
 * @throws FacilitatorError `unreachable` or `timeout`
 */
async function post(
  opts: FacilitatorOptions,
  url: string,
  body: string,
): Promise<{ ok: boolean; status: number; data: unknown; text: string }> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new FacilitatorError("timeout", `no answer from ${url} within ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
  });
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    ...(opts.authorization ? { Authorization: opts.authorization } : {}),
  };
  const exchange = async () => {
    let res: Response;
    let text: string;
    try {
      res = await opts.fetch(url, { method: "POST", headers, redirect: "follow", body, signal: controller.signal });
      text = await res.text();
    } catch (err) {
      throw new FacilitatorError("unreachable", `cannot reach ${url}: ${err instanceof Error ? err.message : String(err)}`);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    return { ok: res.ok, status: res.status, data, text };
  };
  try {
    return await Promise.race([exchange(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A facilitator client for `opts` (x402 v2 `/verify` and `/settle`).
 * @throws TypeError when `url` is not http(s) or `timeoutMs` is not a positive integer
 */
export function facilitatorClient(opts: FacilitatorOptions): FacilitatorClient {
  if (!/^https?:\/\/\S+$/.test(opts.url)) throw new TypeError(`facilitator url must be http(s): ${opts.url}`);
  if (!Number.isSafeInteger(opts.timeoutMs) || opts.timeoutMs <= 0)
    throw new TypeError("facilitator timeoutMs must be a positive integer of milliseconds");
  const base = opts.url.replace(/\/+$/, "");
  const bodyOf = (payload: PaymentPayload, requirements: PaymentRequirements) =>
    JSON.stringify({ x402Version: payload.x402Version, paymentPayload: payload, paymentRequirements: requirements });
  return {
    async verify(payload, requirements) {
      const url = `${base}/verify`;
      const { ok, status, data, text } = await post(opts, url, bodyOf(payload, requirements));
      if (ok) {
        const answer = verifyResponse(data);
        if (answer) return answer;
      } else if (isRecord(data) && "isValid" in data) {
        // A refusal with an error status: the verdict is the body's reason, never valid.
        return { isValid: false, ...(typeof data.invalidReason === "string" ? { invalidReason: data.invalidReason } : {}) };
      }
      throw new FacilitatorError("bad_response", `${url} answered ${status}: ${excerpt(text)}`, status);
    },
    async settle(payload, requirements) {
      const url = `${base}/settle`;
      const { ok, status, data, text } = await post(opts, url, bodyOf(payload, requirements));
      const answer = ok || (isRecord(data) && "success" in data) ? settleResponse(data, !ok) : null;
      if (answer) return ok ? answer : { ...answer, success: false };
      throw new FacilitatorError("bad_response", `${url} answered ${status}: ${excerpt(text)}`, status);
    },
  };
}
