#!/usr/bin/env node
/**
 * `tollbooth-bridge`: the command. Parses the command line (args.ts), runs the bridge
 * (bridge.ts) and exits with code 0 when stdin closes or on SIGINT / SIGTERM, after ending
 * the HTTP session. Bad arguments: the reason on one line and a pointer to `--help` on
 * stderr (`argumentsError`), exit code 2. `--help`: usage on stdout, exit code 0.
 *
 *   tollbooth-bridge https://mcp.example.com/mcp --header "Authorization: Bearer …"
 *
 * (paying ways: `--help`, and docs/agents.md, "Stdio bridge".)
 */
import { TollboothError } from "../../tollbooth-client/src/index.ts";
import { argumentsError, parseBridgeArgs, USAGE } from "./args.ts";
import { runBridge } from "./bridge.ts";
import { streamLog } from "./log.ts";

let args;
try {
  args = parseBridgeArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof TollboothError && err.code === "bad_arguments")) throw err;
  process.stderr.write(argumentsError(err.message));
  process.exit(2);
}
if (args === "help") {
  process.stdout.write(USAGE);
  process.exit(0);
}

const log = streamLog(args.logLevel);
const bridge = await runBridge({ ...args, log });
log.info(`relaying stdio to ${args.url.href}`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log.info(`${signal}: closing`);
    void bridge.close();
  });
}
await bridge.closed;
// Keep-alive sockets and timers of the HTTP stack must not hold the process.
process.exit(0);
