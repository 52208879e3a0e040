/// <reference types="@cloudflare/vitest-plugin/types" />
/**
 * Types for the "workers" vitest project (tests that run inside workerd):
 * `env` from `cloudflare:workers` is the gateway's Env (workers/env.ts), and
 * `exports.default` is the gateway Worker's default export (workers/index.ts).
 */
type TollboothEnv = import("../../workers/env.ts").Env;

declare namespace Cloudflare {
  interface Env extends TollboothEnv {}
  interface GlobalProps {
    mainModule: typeof import("../../workers/index.ts");
    durableNamespaces: "CallerState" | "OriginGate";
  }
}
