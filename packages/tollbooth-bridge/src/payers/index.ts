/**
 * The bridge's registry of the ways through a 402 that take options of their own, in the
 * order their flags are listed (`--help`) and checked. A new way with options is one file
 * in this folder (a `BridgePayer`, payer.ts), added to `BRIDGE_PAYERS` and to the two types
 * below; args.ts and bridge.ts name no scheme.
 */
import { type BridgeLightning, type BridgeLightningArgs, l402 } from "./l402.ts";
import { type BridgeX402, type BridgeX402Args, x402 } from "./x402.ts";

/** Every bridge payer, in the order their flags are listed. */
export const BRIDGE_PAYERS = [l402, x402] as const;

/** The payers' part of `parseBridgeArgs`'s result: each one's arguments, `undefined` when `--pay` does not name it. */
export interface BridgePayerArgs {
  /** Set when `pay` includes `l402`: the LND node and the spending limits (satoshis). */
  lightning: BridgeLightningArgs | undefined;
  /** Set when `pay` includes `x402`: the paying key, what it may pay in, the limits (atomic units). */
  x402: BridgeX402Args | undefined;
}

/** The payers' part of `runBridge`'s options. */
export interface BridgePayerOptions {
  /** Paying over Lightning (see `BridgeLightning`). */
  lightning?: BridgeLightning | undefined;
  /** Paying over x402 (see `BridgeX402`). */
  x402?: BridgeX402 | undefined;
}

export type { BridgeLightning, BridgeLightningArgs } from "./l402.ts";
export type { BridgeX402, BridgeX402Args } from "./x402.ts";
