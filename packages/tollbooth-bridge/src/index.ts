/**
 * The library entry of the `tollbooth-bridge` package (packages/tollbooth-bridge; its command
 * is cli.ts): `runBridge(options)` relays MCP over stdio to a gateway's Streamable HTTP
 * endpoint (bridge.ts), `parseBridgeArgs(argv)` reads the command line (args.ts). Both throw
 * `TollboothError` (tollbooth-client's, re-exported) for what they cannot use.
 */

export type { TollboothErrorCode } from "../../tollbooth-client/src/index.ts";
export { TollboothError } from "../../tollbooth-client/src/index.ts";
export type { BridgeArgs } from "./args.ts";
export { parseBridgeArgs, USAGE } from "./args.ts";
export type { BridgeHandle, BridgeOptions } from "./bridge.ts";
export { runBridge } from "./bridge.ts";
export type { BridgeLog, LogLevel } from "./log.ts";
export { streamLog } from "./log.ts";
export type { BridgeLightning, BridgeX402 } from "./payers/index.ts";
