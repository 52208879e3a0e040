/**
 * Global setup of the "unit" project (test/unit and test/e2e): one server-everything for
 * every e2e file that needs a plain MCP origin. Each file still puts its own counting proxy
 * in front of it (test/helpers/origin.ts `startOrigin`), so counts stay per file; only the
 * server process (2–3 s to boot) is shared. Files that need an origin of their own (faults,
 * a custom or Express origin) start it themselves.
 */
import type { TestProject } from "vitest/node";
import { startEverything } from "../../scripts/stack/everything.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Base URL of the shared server-everything (MCP at `${url}/mcp`). */
    everythingUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const everything = await startEverything();
  project.provide("everythingUrl", everything.url);
  return async () => {
    await everything.close();
  };
}
