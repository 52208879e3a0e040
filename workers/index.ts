/**
 * The gateway Worker's entry: `fetch` answers with the gateway built for the environment
 * (workers/gateway/: one origin, or one app per route, the admin API in front), built once
 * per isolate and configuration; a bad configuration answers every request with a 500
 * naming it. The Durable Object classes are exported here for the runtime.
 */
import type { Env } from "./env.ts";
import { gatewayFor } from "./gateway/cache.ts";
import { toProblem } from "./refusal/problem.ts";
import { Refusal } from "./refusal/refusal.ts";

export { CallerState } from "./objects/caller-state.ts";
export { OriginGate } from "./objects/origin-gate.ts";
export { Stats } from "./observe/stats-object.ts";

export default {
  fetch(request, env, ctx) {
    const app = gatewayFor(env);
    if (app instanceof Error) {
      return toProblem(new Refusal({ status: 500, code: "misconfigured", message: `tollbooth is misconfigured: ${app.message}` }));
    }
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
