/**
 * `SessionUses`: the sessions used by requests this isolate admitted from a lease (no Durable
 * Object call, shared/limits/lease.ts), kept per caller until this isolate's next call to the
 * caller's object (an admit, or a lease renewal), which carries them (`touched`). So the object
 * knows each session's last use to within a lease renewal (at most ¾ of `LEASE_MS`, 7.5 s, while
 * the caller is active) at no extra call; an isolate that dies loses what it held (the session then
 * looks as old as its last use the object saw).
 */
import type { SessionUse } from "../objects/caller-state.ts";

/** Callers an isolate keeps session uses for at most (the longest untouched is dropped first). */
export const SESSION_USES_MAX_CALLERS = 10_000;
/** Sessions kept per caller at most: what the object records of one call (`MAX_TOUCHES`, workers/objects/caller-state.ts). */
export const SESSION_USES_PER_CALLER = 64;

/** Per-caller session uses awaiting the next call to the caller's object. */
export class SessionUses {
  private readonly byCaller = new Map<string, Map<string, SessionUse>>();
  private readonly maxCallers: number;
  private readonly maxPerCaller: number;

  /**
   * @param maxCallers callers kept at most
   * @param maxPerCaller sessions kept per caller at most (the latest use of each)
   */
  constructor(maxCallers = SESSION_USES_MAX_CALLERS, maxPerCaller = SESSION_USES_PER_CALLER) {
    this.maxCallers = maxCallers;
    this.maxPerCaller = maxPerCaller;
  }

  /** Remember that `caller` used `use.sessionId` at `use.atMs` (the latest use of a session wins). */
  note(caller: string, use: SessionUse): void {
    let uses = this.byCaller.get(caller);
    if (uses) this.byCaller.delete(caller);
    else {
      if (this.byCaller.size >= this.maxCallers) this.byCaller.delete(this.byCaller.keys().next().value!);
      uses = new Map();
    }
    this.byCaller.set(caller, uses);
    uses.delete(use.sessionId);
    if (uses.size >= this.maxPerCaller) uses.delete(uses.keys().next().value!);
    uses.set(use.sessionId, use);
  }

  /** The uses held for `caller`, forgotten here (the call that carries them records them); undefined when none. */
  take(caller: string): SessionUse[] | undefined {
    const uses = this.byCaller.get(caller);
    if (!uses) return undefined;
    this.byCaller.delete(caller);
    return [...uses.values()];
  }
}
