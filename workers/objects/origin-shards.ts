/**
 * The isolate's side of the origin ceiling (docs/allocation.md, "Per request"): the units of
 * the ceiling this isolate holds on lease from its shard (shared/limits/origin-lease.ts
 * `OriginLeases`), the calls to that shard (`OriginGate.shard`, each bounded by
 * `storeTimeoutMs`), and the congestion its last answer carried. An isolate leases from one
 * shard, `shard:<i>` with i picked at random when it first needs one (a busy location's
 * isolates spread over the shards); the shards report to the object named `root`.
 * Most requests are admitted from the lease with no call; a background call renews the
 * leases when they run low (one call per about a dozen requests).
 */
import type { Congestion } from "../../shared/limits/congestion.ts";
import { congestion } from "../../shared/limits/congestion.ts";
import { type AdmissionClass, CLASS_INDEX } from "../../shared/limits/origin-classes.ts";
import { DEFAULT_ORIGIN_LEASE, OriginLeases, type Receipt } from "../../shared/limits/origin-lease.ts";
import { shardsFor } from "../../shared/limits/origin-root.ts";
import type { ShardReply } from "../../shared/limits/origin-shard.ts";
import type { Policy } from "../../shared/policy/index.ts";
import type { OriginConfig, OriginGate } from "./origin-gate.ts";
import { bounded } from "./stores.ts";

export type { Receipt } from "../../shared/limits/origin-lease.ts";

/** The origin ceiling as one isolate uses it (`originShards`). */
export interface OriginShards {
  /**
   * Take `units` (one per JSON-RPC message) for a request of class `cls`: from this isolate's
   * lease, or by a call to its shard (`paid` and `verified` always may; `worked` and `free`
   * while the class has room and the origin is not congested, or while the class is too slow
   * here for a lease). Then, when the leases run low, a renewal in the background (`defer`).
   * @returns a receipt (admitted: `confirm` it once the request is forwarded, or `giveBack`),
   *   or null (no room at the origin for this class now)
   * @throws StoreTimeoutError, or the shard's error, when its own call to the shard failed (a call it only waited for
   *   settles the leases, and the request then takes what they hold)
   */
  admit(cls: AdmissionClass, units: number, nowMs: number, defer: (what: string, p: Promise<unknown>) => void): Promise<Receipt | null>;
  /** The request of `receipt` goes to the origin: its units are spent (reported with the next call). */
  confirm(receipt: Receipt): void;
  /** The request of `receipt` was refused after all: its units go back to the lease (and stop counting as demand). */
  giveBack(receipt: Receipt): void;
  /** The congestion now: the curve at the load level of the shard's last answer (0 before any). */
  congestion(): Congestion;
  /** Whether class `cls` had room at the shard's last answer (null: never asked). */
  room(cls: AdmissionClass): boolean | null;
  /** Whole seconds until the ceiling's refill covers `units` (a refused paid request's `Retry-After`, ≥ 1). */
  retryAfterSeconds(units: number): number;
}

/**
 * The origin ceiling of a gateway, per isolate; null when the policy sets none.
 * @param ns the `ORIGIN_GATE` namespace (scoped per route, workers/gateway/router.ts)
 * @param timeoutMs bound of every call to a shard (`policy.storeTimeoutMs`)
 * @throws TypeError when the policy sets `originCeiling` and `ns` is not a namespace
 */
export function originShards(ns: DurableObjectNamespace<OriginGate> | undefined, policy: Policy, timeoutMs: number): OriginShards | null {
  const ceiling = policy.originCeiling;
  if (!ceiling) return null;
  if (!ns || typeof ns.idFromName !== "function")
    throw new TypeError(
      "tollbooth(): option `originGate` (the ORIGIN_GATE Durable Object binding) is required when the policy sets originCeiling",
    );
  const { classes, congestion: curve } = policy.allocation;
  const shards = shardsFor(ceiling.capacity, policy.allocation.shards);
  const leases = new OriginLeases({ ...DEFAULT_ORIGIN_LEASE, askBelowLevel: curve.start });
  let config: OriginConfig | undefined;
  let shard = 0;
  let shardId: DurableObjectId | undefined;
  /**
   * Per class, how many calls that ask for it are in flight (what a `wait` polls).
   * Invariant: a request never awaits a promise another request made. In workerd the
   * continuation of a promise runs in the I/O context of the request whose I/O settled it,
   * so a request that awaited another's shard call would then fetch the origin on that
   * request's behalf, and its own response would fail ("Cannot perform I/O on behalf of a
   * different request", a 500 after the origin ran the call). Waiting polls this count
   * with timers of its own instead.
   */
  const asking = [0, 0, 0, 0];

  /** One call to the shard (a `need`: a waiting request's units); settles the leases whatever happens. */
  const send = (need?: { cls: number; units: number }): Promise<Receipt | null> => {
    if (!config) {
      // Picked once, in a request (Workers allow no randomness at start-up).
      shard = Math.floor(Math.random() * shards);
      shardId = ns.idFromName(`shard:${shard}`);
      const key = JSON.stringify([ceiling, shards, classes, curve.riseSeconds, curve.fallSeconds]);
      config = {
        key,
        ceiling,
        shards,
        classes,
        curve: { riseSeconds: curve.riseSeconds, fallSeconds: curve.fallSeconds },
        root: ns.idFromName("root").toString(),
      };
    }
    const sent = leases.call(Date.now(), need);
    // A stub is an I/O object of the request that made it: one per call.
    const stub = ns.get(shardId!);
    const req = { config, shard, call: sent.call };
    for (const k of sent.classes) asking[k]! += 1;
    const settled = () => {
      for (const k of sent.classes) asking[k]! -= 1;
    };
    return bounded(() => stub.shard(req) as Promise<ShardReply>, timeoutMs).then(
      (reply) => {
        settled();
        return leases.settle(sent, reply, Date.now());
      },
      (err: unknown) => {
        settled();
        leases.settle(sent, null, Date.now());
        throw err;
      },
    );
  };

  return {
    async admit(cls, units, nowMs, defer) {
      const k = CLASS_INDEX[cls];
      let a = leases.admit(k, units, nowMs);
      if (a.kind === "wait") {
        await untilSettled(() => asking[k] === 0, timeoutMs);
        a = leases.retry(k, units, Date.now());
      }
      const receipt = a.kind === "admitted" ? a.receipt : a.kind === "ask" ? await send({ cls: k, units }) : null;
      if (leases.due(Date.now())) defer("OriginGate.shard", send());
      return receipt;
    },
    confirm: (receipt) => leases.confirm(receipt),
    giveBack: (receipt) => void leases.giveBack(receipt, Date.now()),
    congestion: () => congestion(leases.level(), curve),
    room: (cls) => leases.room(CLASS_INDEX[cls]),
    retryAfterSeconds: (units) => Math.max(1, Math.ceil(units / ceiling.refillPerSecond)),
  };
}

/** Milliseconds between two looks of {@link untilSettled}. */
const POLL_MS = 2;

/**
 * Resolves once `done()` is true or after `timeoutMs`, looking every {@link POLL_MS} ms with
 * timers of the calling request (never awaiting another request's promise: see `asking`).
 */
async function untilSettled(done: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done() && Date.now() < until) await new Promise((r) => setTimeout(r, POLL_MS));
}
