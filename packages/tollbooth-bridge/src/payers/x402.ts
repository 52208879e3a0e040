/**
 * The bridge side of paying over x402 (`--pay x402`): the paying key, the networks and
 * assets and the spending limits on the command line, the viem account built from the key,
 * payments logged.
 */
import { readFileSync } from "node:fs";
import { privateKeyToAccount } from "viem/accounts";
import type { X402Options } from "../../../tollbooth-client/src/index.ts";
import { atomicOption, badArguments, listFlag, stringFlag } from "../flags.ts";
import type { BridgePayer } from "./payer.ts";

/** The x402 part of the command line (`--pay` with `x402`). */
export interface BridgeX402Args {
  /** `--evm-key-file`, read: the private key, `0x` + 64 lowercase hex. */
  privateKey: `0x${string}`;
  /** `--x402-network`, CAIP-2 (`eip155:<chain id>`), in order given, without repeats. */
  networks: string[];
  /** `--x402-asset`, token addresses (`0x` + 40 hex), as given. */
  assets: string[];
  /** `--max-x402-per-request` (default `maxPerHour`). */
  maxPerRequest: bigint;
  /** `--max-x402-per-hour`. */
  maxPerHour: bigint;
}

/**
 * The x402 part of `runBridge`'s options (needed when `pay` includes `"x402"`): allowed
 * networks and assets, spending limits in atomic units, and either a `privateKey` (`0x` + 64
 * hex; the bridge builds a viem account with `privateKeyToAccount`) or a ready `signer`.
 * Payments are logged; an `onPay` given here is called too.
 */
export type BridgeX402 = Omit<X402Options, "signer"> & ({ signer: X402Options["signer"] } | { privateKey: `0x${string}` });

/** The private key in `path`: `0x` + 64 hex (the `0x` may be left out), whitespace around it ignored. Never echoed. */
function readEvmKey(path: string): `0x${string}` {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw badArguments(`--evm-key-file: cannot read ${path}: ${(err as Error).message}`);
  }
  const hex = text.startsWith("0x") || text.startsWith("0X") ? text.slice(2) : text;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw badArguments(`--evm-key-file: ${path} does not hold a private key (0x + 64 hex)`);
  return `0x${hex.toLowerCase()}`;
}

/** The signer of `x4`: its own, or a viem account from its private key. */
function signerOf(x4: BridgeX402): X402Options["signer"] {
  if ("signer" in x4) return x4.signer;
  try {
    return privateKeyToAccount(x4.privateKey);
  } catch {
    throw new TypeError("runBridge: option x402.privateKey is not a valid private key (0x + 64 hex)");
  }
}

/** The bridge side of the x402 payer. */
export const x402: BridgePayer<"x402", BridgeX402Args, BridgeX402> = {
  name: "x402",
  key: "x402",
  over: "x402",
  pitch: "with --pay x402, paying USDC over x402",
  flags: {
    "evm-key-file": { type: "string" },
    "x402-network": { type: "string", multiple: true },
    "x402-asset": { type: "string", multiple: true },
    "max-x402-per-request": { type: "string" },
    "max-x402-per-hour": { type: "string" },
  },
  required: ["evm-key-file", "x402-network", "x402-asset", "max-x402-per-hour"],
  usage: `  --evm-key-file <path>    with x402: a file holding the paying account's private key
                           (0x + 64 hex); keep it readable by you only
  --x402-network <caip2>   with x402: a network it may pay on, e.g. eip155:8453
                           (repeatable, or comma-separated; required)
  --x402-asset <address>   with x402: a token contract it may pay in, e.g. Base USDC
                           0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 (repeatable, or
                           comma-separated; required)
  --max-x402-per-hour <n>  with x402: most atomic units of an asset signed for in any
                           hour (required; 1000000 = 1 USDC)
  --max-x402-per-request <n>
                           with x402: most atomic units one payment may ask (default
                           --max-x402-per-hour); dearer offers are not paid
`,
  parse(values) {
    const networks = listFlag(values, "x402-network");
    const badNetwork = networks.find((n) => !/^eip155:[0-9]+$/.test(n));
    if (networks.length === 0 || badNetwork !== undefined)
      throw badArguments(`--x402-network takes CAIP-2 EVM networks (eip155:<chain id>), got ${JSON.stringify(badNetwork ?? "")}`);
    const assets = listFlag(values, "x402-asset");
    const badAsset = assets.find((a) => !/^0x[0-9a-fA-F]{40}$/.test(a));
    if (assets.length === 0 || badAsset !== undefined)
      throw badArguments(`--x402-asset takes token addresses (0x + 40 hex), got ${JSON.stringify(badAsset ?? "")}`);
    const maxPerHour = atomicOption(stringFlag(values, "max-x402-per-hour"), "--max-x402-per-hour")!;
    return {
      privateKey: readEvmKey(stringFlag(values, "evm-key-file")!),
      networks,
      assets,
      maxPerHour,
      maxPerRequest: atomicOption(stringFlag(values, "max-x402-per-request"), "--max-x402-per-request") ?? maxPerHour,
    };
  },
  resolverOptions(x4, log) {
    if (!x4) return { x402: undefined };
    const { networks, assets, maxPerRequest, maxPerHour, onPay } = x4;
    const signer = signerOf(x4);
    return {
      x402: {
        signer,
        networks,
        assets,
        maxPerRequest,
        maxPerHour,
        onPay: (e) => {
          log.info(`paid ${e.amount} atomic units of ${e.asset} on ${e.network} (x402; signed in ${Math.round(e.ms)} ms)`);
          onPay?.(e);
        },
      },
    };
  },
};
