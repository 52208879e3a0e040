/**
 * The library entry of the `tollbooth-bridge` package (packages/tollbooth-bridge; its command
 * is cli.ts): `runBridge(options)` relays MCP over stdio to a gateway's Streamable HTTP
 * endpoint (bridge.ts), `parseBridgeArgs(argv)` reads the command line (args.ts).
 */
export { runBridge } from "./bridge.ts";
export type { BridgeHandle, BridgeLightning, BridgeOptions, BridgeX402 } from "./bridge.ts";
export { parseBridgeArgs, UsageError, USAGE } from "./args.ts";
export type { BridgeArgs } from "./args.ts";
export { streamLog } from "./log.ts";
export type { BridgeLog, LogLevel } from "./log.ts";
