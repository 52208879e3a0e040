/**
 * The admin API's answers, through its renderer (workers/refusal/admin.ts): JSON replies,
 * refusals as `{ error, message, … }`, the 405 naming the methods a path takes, and reading
 * a JSON request body (bounded in size and time).
 */
import { readBody, TOO_LARGE, TOO_SLOW } from "../pipeline/read-body.ts";
import { adminJson, toAdminProblem } from "../refusal/admin.ts";
import { Refusal } from "../refusal/refusal.ts";

/** Largest admin request body, bytes. */
const MAX_BODY_BYTES = 4096;
/** Time a body may take to arrive, ms. */
const BODY_TIMEOUT_MS = 5_000;

/** A JSON answer of the admin API. */
export const reply = adminJson;

/**
 * A refusal of the admin API: `{ error, message }` (+ details).
 * @param retryAfter whole seconds of `Retry-After`, sent after `headers`
 */
export function problem(
  status: number,
  error: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
  retryAfter?: number,
): Response {
  return toAdminProblem(
    new Refusal({ status, code: error, message, data: extra, headers, ...(retryAfter !== undefined ? { retryAfter } : {}) }),
  );
}

/** 405 naming the methods the path takes. */
export function wrongMethod(method: string, allow: string[]): Response {
  return problem(
    405,
    "method_not_allowed",
    `${method} is not allowed here; use ${allow.join(", ")}`,
    { allow },
    { allow: allow.join(", ") },
  );
}

/** The request's JSON body, or the refusal that says what is wrong with it (413, 408, 400). */
export async function readJson(req: Request): Promise<{ ok: true; value: unknown } | { ok: false; res: Response }> {
  const raw = await readBody(req, MAX_BODY_BYTES, BODY_TIMEOUT_MS);
  if (raw === TOO_LARGE) return { ok: false, res: problem(413, "too_large", `the body is larger than ${MAX_BODY_BYTES} bytes`) };
  if (raw === TOO_SLOW) return { ok: false, res: problem(408, "too_slow", "the body did not arrive in time") };
  if (raw === null || raw.byteLength === 0) return { ok: false, res: problem(400, "bad_body", "this request needs a JSON body") };
  try {
    return { ok: true, value: JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) };
  } catch {
    return { ok: false, res: problem(400, "bad_body", "the body is not JSON (UTF-8)") };
  }
}
