#!/usr/bin/env node
/**
 * `tollbooth-bridge`: the command. Parses the command line (args.ts), runs the bridge
 * (bridge.ts) and exits with code 0 when stdin closes or on SIGINT / SIGTERM, after ending
 * the HTTP session. Bad arguments: usage on stderr, exit code 2. `--help`: usage on stdout.
 *
 *   tollbooth-bridge https://mcp.example.com/mcp --header "Authorization: Bearer …"
 *   tollbooth-bridge https://mcp.example.com/mcp --pay l402,pow --lnd-url https://127.0.0.1:8080 \
 *     --lnd-macaroon-file ~/.lnd/data/chain/bitcoin/mainnet/admin.macaroon --max-sats-per-hour 1000
 *   tollbooth-bridge https://mcp.example.com/mcp --pay x402,pow --evm-key-file ~/.tollbooth/evm.key \
 *     --x402-network eip155:8453 --x402-asset 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 \
 *     --max-x402-per-hour 1000000
 */
import { parseBridgeArgs, UsageError, USAGE } from "./args.ts";
import { runBridge } from "./bridge.ts";
import { streamLog } from "./log.ts";

let args;
try {
  args = parseBridgeArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`tollbooth-bridge: ${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (args === "help") {
  process.stdout.write(USAGE);
  process.exit(0);
}

const log = streamLog(args.logLevel);
const bridge = await runBridge({
  url: args.url,
  headers: args.headers,
  maxDifficulty: args.maxDifficulty,
  maxSolveMs: args.maxSolveMs,
  pay: args.pay,
  lightning: args.lightning,
  x402: args.x402,
  log,
});
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
