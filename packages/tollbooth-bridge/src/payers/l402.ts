/**
 * The bridge side of paying over Lightning (`--pay l402`): the LND node and the spending
 * limits on the command line, the `lndWallet` built from them, payments logged.
 */
import { readFileSync } from "node:fs";
import { type LightningOptions, type LightningWallet, lndWallet } from "../../../tollbooth-client/src/index.ts";
import { badArguments, integerOption, LOOPBACK, stringFlag } from "../flags.ts";
import type { BridgePayer } from "./payer.ts";

/** The Lightning part of the command line (`--pay` with `l402`). */
export interface BridgeLightningArgs {
  /** `--lnd-url`: the paying LND node's REST base URL. */
  lndUrl: URL;
  /** `--lnd-macaroon-file`, read and given as hex (a binary file is hex-encoded). */
  macaroonHex: string;
  /** `--max-sats-per-request` (default `maxSatsPerHour`). */
  maxSatsPerRequest: number;
  /** `--max-sats-per-hour`. */
  maxSatsPerHour: number;
}

/**
 * The Lightning part of `runBridge`'s options (needed when `pay` includes `"l402"`):
 * spending limits in satoshis, and either the LND node (`lndUrl`, `macaroonHex`; the bridge
 * builds `lndWallet`) or a ready `wallet`.
 */
export type BridgeLightning = Omit<LightningOptions, "wallet"> &
  ({ wallet: LightningWallet } | { lndUrl: URL | string; macaroonHex: string });

/** The macaroon file as hex: a file of hex digits is taken as is, any other is binary and hex-encoded. */
function readMacaroonHex(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw badArguments(`--lnd-macaroon-file: cannot read ${path}: ${(err as Error).message}`);
  }
  const text = bytes.toString("latin1").trim();
  if (/^(?:[0-9a-fA-F]{2})+$/.test(text)) return text.toLowerCase();
  if (bytes.length === 0 || text === "") throw badArguments(`--lnd-macaroon-file: ${path} is empty`);
  return bytes.toString("hex");
}

/** The bridge side of the Lightning payer. */
export const l402: BridgePayer<"lightning", BridgeLightningArgs, BridgeLightning> = {
  name: "l402",
  key: "lightning",
  over: "Lightning",
  pitch: "with --pay l402, paying Lightning invoices",
  flags: {
    "lnd-url": { type: "string" },
    "lnd-macaroon-file": { type: "string" },
    "max-sats-per-request": { type: "string" },
    "max-sats-per-hour": { type: "string" },
  },
  required: ["lnd-url", "lnd-macaroon-file", "max-sats-per-hour"],
  usage: `  --lnd-url <url>          with l402: the paying LND node's REST URL, e.g.
                           https://127.0.0.1:8080
  --lnd-macaroon-file <path>
                           with l402: a macaroon of that node allowed to pay
                           (admin.macaroon, binary or hex)
  --max-sats-per-hour <n>  with l402: most satoshis paid in any hour (required)
  --max-sats-per-request <n>
                           with l402: most satoshis one invoice may ask (default
                           --max-sats-per-hour); dearer invoices are not paid
`,
  parse(values, { allowHttp }) {
    const raw = stringFlag(values, "lnd-url")!;
    const lndUrl = URL.canParse(raw) ? new URL(raw) : undefined;
    if (!lndUrl || (lndUrl.protocol !== "https:" && lndUrl.protocol !== "http:"))
      throw badArguments(`--lnd-url is not an http(s) URL: ${raw}`);
    if (lndUrl.protocol === "http:" && !LOOPBACK.has(lndUrl.hostname) && !allowHttp) {
      throw badArguments(
        `refusing plain http to the LND node ${lndUrl.host} (its macaroon would travel in clear); use https or --allow-http`,
      );
    }
    const maxSatsPerHour = integerOption(stringFlag(values, "max-sats-per-hour"), "--max-sats-per-hour", 1, 21e14)!;
    return {
      lndUrl,
      macaroonHex: readMacaroonHex(stringFlag(values, "lnd-macaroon-file")!),
      maxSatsPerHour,
      maxSatsPerRequest: integerOption(stringFlag(values, "max-sats-per-request"), "--max-sats-per-request", 1, 21e14) ?? maxSatsPerHour,
    };
  },
  resolverOptions(ln, log) {
    const lightning: LightningOptions | undefined = ln && {
      wallet: "wallet" in ln ? ln.wallet : lndWallet({ url: String(ln.lndUrl), macaroonHex: ln.macaroonHex }),
      maxSatsPerRequest: ln.maxSatsPerRequest,
      maxSatsPerHour: ln.maxSatsPerHour,
    };
    return { lightning, onPay: (e) => log.info(`paid ${e.sats} sats (L402) in ${Math.round(e.ms)} ms`) };
  },
};
