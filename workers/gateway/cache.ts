/**
 * The per-isolate app cache: a gateway is built once per isolate and configuration
 * (`createGateway`), and a configuration that does not build is remembered as its error.
 */
import type { Env } from "../env.ts";
import { createGateway, stringBindings } from "./create.ts";

/**
 * Built apps, by `CALLER_BUCKET` binding (one per isolate in production), then by the
 * string settings and the other bindings: a different binding or configuration gets its own app.
 */
const built = new WeakMap<object, { env: Env; key: string; bindings: unknown[]; app: ReturnType<typeof createGateway> | Error }>();

/**
 * The gateway for `env`: the one built for the same binding and configuration, else a new one.
 * @returns the gateway, or the error that says why the configuration does not build
 */
export function gatewayFor(env: Env): ReturnType<typeof createGateway> | Error {
  const binding: object = env.CALLER_BUCKET ?? built;
  let cached = built.get(binding);
  // The same environment object as last time (every request of an isolate in production):
  // nothing to compare, no key to build on the hot path.
  if (cached?.env === env) return cached.app;
  const key = JSON.stringify(stringBindings(env));
  const bindings = [
    env.ORIGIN_GATE,
    env.TOLLBOOTH_NETWORK_LIMIT,
    env.TOLLBOOTH_KEYS,
    env.TOLLBOOTH_STATS,
    env.TOLLBOOTH_ANALYTICS,
    env.ASSETS,
  ];
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
