/**
 * The admin JSON API behind the operator's token (docs/admin.md): callers (./caller-routes.ts),
 * API keys (issue, list, revoke: ./keys.ts), the metrics (`stats` as JSON, `metrics` as
 * Prometheus text) and the policy. Unknown path 404, wrong method 405, bad input 400; no key
 * store or stats namespace bound: 501.
 */
import { prometheusText } from "../observe/prometheus.ts";
import { LATENCY_BUCKETS_MS } from "../observe/types.ts";
import { callerRoutes } from "./caller-routes.ts";
import { type AdminContext, snapshot } from "./context.ts";
import { ADMIN_HEADERS } from "./dashboard.ts";
import { issueKey, listKeys, revokeKeys } from "./keys.ts";
import { moneyOf } from "./money.ts";
import { problem, readJson, reply, wrongMethod } from "./reply.ts";

/** `<admin>/keys` (GET: list, POST: issue) and `<admin>/keys/<hash or name>` (DELETE: revoke). */
async function keyRoutes(ctx: AdminContext, req: Request, rest: string[]): Promise<Response> {
  const { keys } = ctx;
  if (rest.length > 1) return problem(404, "not_found", "use <admin>/keys or <admin>/keys/<hash or name>");
  if (rest.length === 0 && req.method !== "GET" && req.method !== "POST") return wrongMethod(req.method, ["GET", "POST"]);
  if (rest.length === 1 && req.method !== "DELETE") return wrongMethod(req.method, ["DELETE"]);
  if (!keys) return problem(501, "no_key_store", "the TOLLBOOTH_KEYS KV namespace is not bound");
  if (req.method === "GET") return reply(200, { keys: await listKeys(keys) });
  if (req.method === "DELETE") {
    const done = await revokeKeys(keys, rest[0]!);
    if (!done.ok)
      return problem(
        done.reason === "not_found" ? 404 : 409,
        done.reason,
        done.detail,
        done.reason === "ambiguous" ? { matches: done.matches } : {},
      );
    return reply(200, {
      revoked: done.revoked,
      matchedBy: done.matchedBy,
      effectiveWithinSeconds: done.effectiveWithinMs / 1000,
      note: "isolates that looked the key up recently accept it until their 30 s memo expires; KV propagation adds up to ~60 s",
    });
  }
  const body = await readJson(req);
  if (!body.ok) return body.res;
  const done = await issueKey(keys, ctx.policy, body.value, Date.now());
  if (!done.ok) return problem(done.reason === "name_taken" ? 409 : 400, done.reason, done.detail ?? done.reason);
  return reply(201, {
    key: done.key,
    sha256Prefix: done.sha256.slice(0, 12),
    caller: `key:${done.sha256.slice(0, 32)}`,
    ...done.record,
    note: "the key is shown only this once; only its SHA-256 is stored",
  });
}

/**
 * `GET <admin>/stats` (the snapshot, the latency histogram's bucket bounds `latencyBoundsMs`
 * and the `money` summary, ./money.ts), `/metrics` or `/policy`.
 */
async function readOnly(ctx: AdminContext, req: Request, head: "stats" | "metrics" | "policy"): Promise<Response> {
  if (req.method !== "GET") return wrongMethod(req.method, ["GET"]);
  if (head === "policy") return reply(200, ctx.publicPolicy);
  if (!ctx.stats) return problem(501, "no_stats", "the TOLLBOOTH_STATS Durable Object namespace is not bound");
  const snap = await snapshot(ctx, Date.now());
  if (head === "stats") return reply(200, { ...snap, latencyBoundsMs: LATENCY_BUCKETS_MS, money: moneyOf(snap) });
  return new Response(prometheusText(snap), {
    status: 200,
    headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store", ...ADMIN_HEADERS },
  });
}

/** Answer an authenticated request to the API (`segments`: the path after the admin path, decoded). */
export async function adminApi(ctx: AdminContext, req: Request, segments: string[]): Promise<Response> {
  const [head, ...rest] = segments;
  switch (head) {
    case "callers":
      return callerRoutes(ctx, req, rest);
    case "keys":
      return keyRoutes(ctx, req, rest);
    case "stats":
    case "metrics":
    case "policy":
      if (rest.length === 0) return readOnly(ctx, req, head);
  }
  return problem(404, "not_found", `no admin path ${ctx.base}/${segments.join("/")}`);
}
