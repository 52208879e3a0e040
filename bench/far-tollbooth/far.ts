/**
 * Bench only: a "far" Durable Object namespace. `farNamespace(ns, delayMs)` wraps a
 * Durable Object namespace binding so that every call to one of its objects (any RPC
 * method — `admit`, `take`, a method added later — and `fetch`) first waits `delayMs`
 * milliseconds, then calls the real stub: as if the object lived a fixed distance away.
 * Every such call is counted ({@link doCalls}), delay or not. `idFromName`, `idFromString`,
 * `newUniqueId` and the stub's `id` / `name` pass through unchanged and cost nothing.
 *
 * The other billed operations are counted too, for the cost model of `npm run bench:gateway`:
 * calls to the metrics' `Stats` object ({@link statsCalls}, through `farNamespace(ns, 0,
 * statsCalls)`), KV reads ({@link countingKv}) and Analytics Engine data points
 * ({@link countingAnalytics}).
 *
 * Used by the wrapper Workers bench/far-tollbooth and bench/far-do-limiter, which answer
 * `GET /__bench/do-calls` with {@link BenchCounts} (see {@link benchEndpoint}). The wrapper
 * of a binding is made once per isolate and reused (tollbooth caches its app per
 * `CALLER_BUCKET` object identity and compares its other bindings by identity).
 */

/** Path the wrapper Workers answer before the wrapped Worker: {@link BenchCounts} since the isolate started. */
export const DO_CALLS_PATH = "/__bench/do-calls";

/** Default delay per Durable Object call, milliseconds (`DO_DELAY_MS` var). */
export const DEFAULT_DELAY_MS = 25;

/** Calls to Durable Objects of one kind. (Their duration is not timed here: workerd's clock does not move within a request.) */
export interface CallCounter {
  calls: number;
}

/** Durable Object calls made through every far namespace of this isolate (but `Stats`). */
export const doCalls: CallCounter = { calls: 0 };
/** Of `doCalls`, those to the origin ceiling's objects (`ORIGIN_GATE`: the gateway's calls to its shard, the shards' reports to the root). */
export const originCalls: CallCounter = { calls: 0 };
/** Calls to the metrics' `Stats` object (its flushes): the same wrapper, no delay. */
export const statsCalls: CallCounter = { calls: 0 };
/**
 * Other billed operations: KV reads (`get`, `getWithMetadata`, one per key asked), Analytics
 * Engine data points, and, inside the Durable Objects ({@link instrumentStorage},
 * {@link countAlarm}): SQLite rows written (`setAlarm` counts as one write) and alarm
 * invocations (billed Durable Object requests). The objects run in the Worker's isolate
 * under workerd locally, so one module's counters see both sides.
 */
export const operations = { kvReads: 0, aePoints: 0, rowsWritten: 0, alarms: 0 };

/** What `GET /__bench/do-calls` answers: every counter since the isolate started. */
export interface BenchCounts {
  /** Durable Object calls (CallerState, OriginGate, RateLimiter: every RPC call or fetch). */
  calls: number;
  /** Of `calls`, those to the origin ceiling's `OriginGate` objects (shards and root). */
  originCalls: number;
  /** Calls to the `Stats` object. */
  statsCalls: number;
  kvReads: number;
  aePoints: number;
  /** SQLite rows written by the Durable Objects (`cursor.rowsWritten` of each `sql.exec`, plus one per `setAlarm`). */
  rowsWritten: number;
  /** Alarm invocations of the Durable Objects. */
  alarms: number;
}

/** Stub properties that are not calls to the object. */
const STUB_PASS_THROUGH = new Set<string | symbol>(["id", "name", "then", "constructor", "toString", "toJSON"]);

const wrapped = new WeakMap<object, unknown>();

/** `value` read from `target`, bound to it when a function (native bindings reject another `this`). */
function passThrough(target: object, prop: string | symbol): unknown {
  const value: unknown = Reflect.get(target, prop);
  return typeof value === "function" ? value.bind(target) : value;
}

/** A stub whose every call waits `delayMs`, is counted (in `counter`, and `also` when given), then goes to `stub`. */
function farStub<S extends object>(stub: S, delayMs: number, counter: CallCounter, also?: CallCounter): S {
  return new Proxy(stub, {
    get(target, prop) {
      // Not bound: on a stub, `.bind` / `.apply` would themselves be RPC property names.
      if (typeof prop === "symbol" || STUB_PASS_THROUGH.has(prop)) return Reflect.get(target, prop);
      return (...args: unknown[]) => {
        counter.calls++;
        if (also) also.calls++;
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
 * @param counter where its calls are counted (default {@link doCalls})
 * @param also a second counter of its calls (the origin ceiling's, {@link originCalls})
 */
export function farNamespace<N extends object>(ns: N, delayMs: number, counter: CallCounter = doCalls, also?: CallCounter): N {
  const known = wrapped.get(ns) as { delayMs: number; far: N } | undefined;
  if (known?.delayMs === delayMs) return known.far;
  const far = new Proxy(ns, {
    get(target, prop) {
      if (prop === "get" || prop === "getByName") {
        return (key: unknown, options?: unknown) =>
          farStub((Reflect.get(target, prop) as (k: unknown, o?: unknown) => object).call(target, key, options), delayMs, counter, also);
      }
      if (prop === "jurisdiction") {
        return (j: unknown) => farNamespace((Reflect.get(target, prop) as (j: unknown) => object).call(target, j), delayMs, counter, also);
      }
      return passThrough(target, prop);
    },
  });
  wrapped.set(ns, { delayMs, far });
  return far;
}

/** A KV namespace binding whose reads are counted (one per key asked); the same object for the same binding. */
export function countingKv<K extends object>(kv: K): K {
  const known = wrapped.get(kv) as K | undefined;
  if (known) return known;
  const counted = new Proxy(kv, {
    get(target, prop) {
      const value = passThrough(target, prop);
      if ((prop !== "get" && prop !== "getWithMetadata") || typeof value !== "function") return value;
      return (key: unknown, ...rest: unknown[]) => {
        operations.kvReads += Array.isArray(key) ? key.length : 1;
        return (value as (...a: unknown[]) => unknown)(key, ...rest);
      };
    },
  });
  wrapped.set(kv, counted);
  return counted;
}

/** An Analytics Engine dataset binding whose data points are counted; the same object for the same binding. */
export function countingAnalytics<A extends object>(dataset: A): A {
  const known = wrapped.get(dataset) as A | undefined;
  if (known) return known;
  const counted = new Proxy(dataset, {
    get(target, prop) {
      const value = passThrough(target, prop);
      if (prop !== "writeDataPoint" || typeof value !== "function") return value;
      return (point: unknown) => {
        operations.aePoints++;
        return (value as (p: unknown) => unknown)(point);
      };
    },
  });
  wrapped.set(dataset, counted);
  return counted;
}

/**
 * Count what a Durable Object writes: called by a wrapper class's constructor before the
 * real one, it replaces `ctx.storage.sql.exec` and `ctx.storage.setAlarm` on those
 * objects with counting versions (the real methods do the work). Rows a statement writes
 * are read from its cursor right after `exec` (statements that return no rows run to the
 * end there). Idempotent per storage object.
 */
export function instrumentStorage(ctx: DurableObjectState): void {
  const storage = ctx.storage as DurableObjectStorage & { __benchCounted?: true };
  if (storage.__benchCounted) return;
  storage.__benchCounted = true;
  const setAlarm = storage.setAlarm.bind(storage);
  storage.setAlarm = (...args: Parameters<DurableObjectStorage["setAlarm"]>) => {
    operations.rowsWritten++;
    return setAlarm(...args);
  };
  let sql: SqlStorage | undefined;
  try {
    sql = storage.sql;
  } catch {
    return; // key-value storage backend: no SQL
  }
  const exec = sql.exec.bind(sql);
  sql.exec = ((query: string, ...bindings: unknown[]) => {
    const cursor = exec(query, ...bindings);
    operations.rowsWritten += cursor.rowsWritten;
    return cursor;
  }) as SqlStorage["exec"];
}

/** Count one alarm invocation (a wrapper class's `alarm()` calls it before the real one). */
export function countAlarm(): void {
  operations.alarms++;
}

/** `DO_DELAY_MS` as a number of milliseconds (default {@link DEFAULT_DELAY_MS}). */
export function delayOf(env: { DO_DELAY_MS?: string }): number {
  const ms = Number(env.DO_DELAY_MS ?? DEFAULT_DELAY_MS);
  return Number.isFinite(ms) && ms >= 0 ? ms : DEFAULT_DELAY_MS;
}

/** The answer to `GET /__bench/do-calls` ({@link BenchCounts}), or null for any other request. */
export function benchEndpoint(request: Request): Response | null {
  if (request.method !== "GET" || new URL(request.url).pathname !== DO_CALLS_PATH) return null;
  const counts: BenchCounts = { calls: doCalls.calls, originCalls: originCalls.calls, statsCalls: statsCalls.calls, ...operations };
  return Response.json(counts);
}
