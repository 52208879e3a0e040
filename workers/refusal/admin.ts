/**
 * The admin API's answers (docs/admin.md): JSON indented by two spaces, never cached, never
 * framed (`ADMIN_HEADERS`); refusals as `{ error, message, … }` like tollbooth's own
 * endpoints'.
 */
import { ADMIN_HEADERS } from "../admin/dashboard.ts";
import { type Refusal, refusalHeaders } from "./refusal.ts";

/** A JSON answer of the admin API: `value` indented, the base and security headers, then `headers`. */
export function adminJson(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value, null, 2), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...ADMIN_HEADERS, ...headers },
  });
}

/** Render `r` for the admin API: `{ error: r.code, message, ...r.data }`, its headers then `Retry-After`. */
export function toAdminProblem(r: Refusal): Response {
  return adminJson(r.status, { error: r.code, message: r.message, ...r.data }, refusalHeaders(r));
}
