/**
 * Bench only: a "far" Durable Object namespace. `farNamespace(ns, delayMs)` wraps a
 * Durable Object namespace binding so that every call to one of its objects (any RPC
 * method — `admit`, `take`, a method added later — and `fetch`) first waits `delayMs`
 * milliseconds, then calls the real stub: as if the object lived a fixed distance away.
 * Every such call is counted ({@link doCalls}), delay or not. `idFromName`, `idFromString`,
 * `newUniqueId` and the stub's `id` / `name` pass through unchanged and cost nothing.
 *
 * Used by the wrapper Workers bench/far-tollbooth and bench/far-do-limiter, which answer
 * `GET /__bench/do-calls` with `{ calls }` (see {@link benchEndpoint}). The wrapper of a
 * binding is made once per isolate and reused (tollbooth caches its app per
 * `CALLER_BUCKET` object identity).
 */

/** Path the wrapper Workers answer before the wrapped Worker: `{ calls }` since the isolate started. */
export const DO_CALLS_PATH = "/__bench/do-calls";

/** Default delay per Durable Object call, milliseconds (`DO_DELAY_MS` var). */
export const DEFAULT_DELAY_MS = 25;

/** Durable Object calls made through every far namespace of this isolate. */
export const doCalls = { calls: 0 };

/** Stub properties that are not calls to the object. */
const STUB_PASS_THROUGH = new Set<string | symbol>(["id", "name", "then", "constructor", "toString", "toJSON"]);

const wrapped = new WeakMap<object, unknown>();

/** `value` read from `target`, bound to it when a function (native bindings reject another `this`). */
function passThrough(target: object, prop: string | symbol): unknown {
  const value: unknown = Reflect.get(target, prop);
  return typeof value === "function" ? value.bind(target) : value;
}

/** A stub whose every call waits `delayMs`, is counted, then goes to `stub`. */
function farStub<S extends object>(stub: S, delayMs: number): S {
  return new Proxy(stub, {
    get(target, prop) {
      // Not bound: on a stub, `.bind` / `.apply` would themselves be RPC property names.
      if (typeof prop === "symbol" || STUB_PASS_THROUGH.has(prop)) return Reflect.get(target, prop);
      return (...args: unknown[]) => {
        doCalls.calls++;
        // A method call as written (`stub.admit(req)`): `stub.admit.apply(…)` would call a remote `apply`.
        const call = () => (target as Record<string, (...a: unknown[]) => unknown>)[prop]!(...args);
        // No delay: the real call as is (an RpcPromise, pipelining intact).
        if (delayMs <= 0) return call();
        return new Promise((resolve) => setTimeout(resolve, delayMs)).then(call);
      };
    },
  });
}

/**
 * The far version of a Durable Object namespace binding: the same object for the same
 * binding (and delay) for the life of the isolate.
 */
export function farNamespace<N extends object>(ns: N, delayMs: number): N {
  const known = wrapped.get(ns) as { delayMs: number; far: N } | undefined;
  if (known?.delayMs === delayMs) return known.far;
  const far = new Proxy(ns, {
    get(target, prop) {
      if (prop === "get" || prop === "getByName") {
        return (key: unknown, options?: unknown) => farStub((Reflect.get(target, prop) as (k: unknown, o?: unknown) => object).call(target, key, options), delayMs);
      }
      if (prop === "jurisdiction") {
        return (j: unknown) => farNamespace((Reflect.get(target, prop) as (j: unknown) => object).call(target, j), delayMs);
      }
      return passThrough(target, prop);
    },
  });
  wrapped.set(ns, { delayMs, far });
  return far;
}

/** `DO_DELAY_MS` as a number of milliseconds (default {@link DEFAULT_DELAY_MS}). */
export function delayOf(env: { DO_DELAY_MS?: string }): number {
  const ms = Number(env.DO_DELAY_MS ?? DEFAULT_DELAY_MS);
  return Number.isFinite(ms) && ms >= 0 ? ms : DEFAULT_DELAY_MS;
}

/** The answer to `GET /__bench/do-calls`, or null for any other request. */
export function benchEndpoint(request: Request): Response | null {
  if (request.method !== "GET" || new URL(request.url).pathname !== DO_CALLS_PATH) return null;
  return Response.json({ calls: doCalls.calls });
}
