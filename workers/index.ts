/**
 * The gateway Worker: `tollbooth()` in front of `mcpProxy()`, configured from the
 * environment (see workers/env.ts and wrangler.toml). The app is built once per isolate
 * and configuration; a bad configuration answers every request with a 500 naming it.
 */
import { Hono } from "hono";
import { admin } from "./admin/index.ts";
import { importKeyring, parseSecrets, type HmacKey } from "../shared/keys.ts";
import { parsePolicy } from "../shared/policy.ts";
import type { Env } from "./env.ts";
import { parseFlushMs } from "./observe/flusher.ts";
import { observe } from "./observe/observe.ts";
import { mcpProxy } from "./proxy.ts";
import { json } from "./responses.ts";
import { tollbooth, type TollboothVariables } from "./tollbooth.ts";

export { CallerBucket } from "./caller-bucket.ts";
export { OriginGate } from "./origin-gate.ts";
export { Stats } from "./observe/stats-object.ts";

/** The environment's string bindings (vars and secrets), by name. */
function stringBindings(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === "string"));
}

/**
 * Build the gateway app for an environment.
 * @throws TypeError naming the bad setting (policy field, secret, ORIGIN_URL, a binding the policy needs)
 */
export function createGateway(env: Env): Hono<{ Bindings: Env; Variables: TollboothVariables }> {
  const policy = parsePolicy(env.TOLLBOOTH_POLICY);
  if (env.TOLLBOOTH_ORIGIN_SECRET !== undefined) parseSecrets(env.TOLLBOOTH_ORIGIN_SECRET, "TOLLBOOTH_ORIGIN_SECRET");
  let proofKey: Promise<HmacKey> | undefined;
  const app = new Hono<{ Bindings: Env; Variables: TollboothVariables }>();
  // The admin API and dashboard (docs/admin.md), before tollbooth: only with TOLLBOOTH_ADMIN_TOKEN
  // set; without it the admin paths are ordinary gateway paths.
  if (env.TOLLBOOTH_ADMIN_TOKEN !== undefined) {
    app.use(admin({ token: env.TOLLBOOTH_ADMIN_TOKEN, path: env.TOLLBOOTH_ADMIN_PATH, policy, buckets: env.CALLER_BUCKET, network: env.TOLLBOOTH_NETWORK_LIMIT, keys: env.TOLLBOOTH_KEYS, stats: env.TOLLBOOTH_STATS, assets: env.ASSETS }));
  }
  // The decision log and the metrics (docs/observability.md): every request the gateway decides.
  app.use(observe({ stats: env.TOLLBOOTH_STATS, analytics: env.TOLLBOOTH_ANALYTICS, flushMs: parseFlushMs(env.TOLLBOOTH_METRICS_FLUSH_MS) }));
  app.use(
    tollbooth({
      policy,
      secret: env.TOLLBOOTH_SECRET,
      buckets: env.CALLER_BUCKET,
      originGate: env.ORIGIN_GATE,
      network: env.TOLLBOOTH_NETWORK_LIMIT,
      keys: env.TOLLBOOTH_KEYS,
      // Every string binding: a payment scheme names the secret it needs (workers/schemes/).
      secrets: stringBindings(env),
    }),
  );
  app.all(
    "*",
    mcpProxy({
      originUrl: env.ORIGIN_URL,
      proofKey: () => (proofKey ??= importKeyring(env.TOLLBOOTH_ORIGIN_SECRET ?? env.TOLLBOOTH_SECRET, env.TOLLBOOTH_ORIGIN_SECRET === undefined ? "TOLLBOOTH_SECRET" : "TOLLBOOTH_ORIGIN_SECRET").then((k) => k.signer)),
      timeoutMs: policy.originTimeoutMs,
    }),
  );
  return app;
}

/**
 * Built apps, by `CALLER_BUCKET` binding (one per isolate in production), then by the
 * string settings and the other bindings: a different binding or configuration gets its own app.
 */
const built = new WeakMap<object, { env: Env; key: string; bindings: unknown[]; app: ReturnType<typeof createGateway> | Error }>();

function gatewayFor(env: Env): ReturnType<typeof createGateway> | Error {
  const binding: object = env.CALLER_BUCKET ?? built;
  let cached = built.get(binding);
  // The same environment object as last time (every request of an isolate in production):
  // nothing to compare, no key to build on the hot path.
  if (cached?.env === env) return cached.app;
  const key = JSON.stringify(stringBindings(env));
  const bindings = [env.ORIGIN_GATE, env.TOLLBOOTH_NETWORK_LIMIT, env.TOLLBOOTH_KEYS, env.TOLLBOOTH_STATS, env.TOLLBOOTH_ANALYTICS];
  if (cached?.key !== key || cached.bindings.some((b, i) => b !== bindings[i])) {
    let app: ReturnType<typeof createGateway> | Error;
    try {
      app = createGateway(env);
    } catch (err) {
      app = err instanceof Error ? err : new Error(String(err));
    }
    cached = { env, key, bindings, app };
    built.set(binding, cached);
  } else cached.env = env;
  return cached.app;
}

export default {
  fetch(request, env, ctx) {
    const app = gatewayFor(env);
    if (app instanceof Error) {
      return json(500, { error: "misconfigured", message: `tollbooth is misconfigured: ${app.message}` });
    }
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
