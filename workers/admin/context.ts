/** What the admin API works with, built once by `admin()` (./index.ts) from its options. */
import type { Policy } from "../../shared/policy/index.ts";
import type { CallerState } from "../objects/caller-state.ts";
import { statsStub } from "../observe/flusher.ts";
import type { Stats } from "../observe/stats-object.ts";
import type { StatsSnapshot } from "../observe/types.ts";

/** Minutes of metrics `GET <path>/stats` answers (the dashboard's hour). */
export const STATS_MINUTES = 60;

/** One route of a gateway with several origins (`TOLLBOOTH_ROUTES`): its policy and its callers' objects (`route:<name>/<caller>`). */
export interface AdminRoute {
  name: string;
  policy: Policy;
  callers: DurableObjectNamespace<CallerState>;
}

/** The admin API's view of the gateway. */
export interface AdminContext {
  /** The gateway's policy, validated. */
  policy: Policy;
  /** The admin path (`TOLLBOOTH_ADMIN_PATH`). */
  base: string;
  /** The gateway's caller objects (one origin). */
  callers: DurableObjectNamespace<CallerState>;
  /** The routes by name (several origins; empty with one). */
  routes: ReadonlyMap<string, AdminRoute>;
  keys: KVNamespace | undefined;
  stats: DurableObjectNamespace<Stats> | undefined;
  /** The policy as `GET <path>/policy` shows it. */
  publicPolicy: unknown;
}

/** The metrics of the last `STATS_MINUTES` (needs `ctx.stats`). */
export function snapshot(ctx: AdminContext, nowMs: number): Promise<StatsSnapshot> {
  return statsStub(ctx.stats!).snapshot({ nowMs, minutes: STATS_MINUTES });
}
