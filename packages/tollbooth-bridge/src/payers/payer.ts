/**
 * What the bridge needs of a way through a 402 that has options of its own (a wallet, a
 * signer, spending limits): its command-line flags, how they become `parseBridgeArgs`'s
 * result, and how `runBridge`'s options become `withTollbooth`'s (wallets and signers built,
 * payments logged). The payer itself is the client's (tollbooth-client/src/payers/); a way
 * without options (proof of work) needs no bridge payer: `--pay` takes every way the client
 * knows.
 */
import type { PayerName, WithTollboothOptions } from "../../../tollbooth-client/src/index.ts";
import type { FlagValues } from "../flags.ts";
import type { BridgeLog } from "../log.ts";

/** What a bridge payer's `parse` may use beside its flags' values. */
export interface ParseContext {
  /** `--allow-http` was given (plain http to a host other than localhost is allowed). */
  allowHttp: boolean;
}

/**
 * The bridge side of one payer. `Key` is its field in `BridgeArgs` (holding `Args`, or
 * `undefined` when `--pay` does not name it) and in `BridgeOptions` (holding `Options`).
 */
export interface BridgePayer<Key extends string, Args, Options> {
  /** The client payer's name (in `--pay`). */
  readonly name: PayerName;
  /** Its field in `BridgeArgs` and `BridgeOptions`. */
  readonly key: Key;
  /** What paying this way is, in messages: `--<flag> is for paying over <over>`. */
  readonly over: string;
  /** Its part of the usage's first paragraph: "with --pay <name>, paying …". */
  readonly pitch: string;
  /** Its flags (`parseArgs` options, names without `--`), in the order they are listed. */
  readonly flags: Readonly<Record<string, { type: "string"; multiple?: boolean }>>;
  /** Those of `flags` that `--pay` naming it requires. */
  readonly required: readonly string[];
  /** Its lines in the usage text (each ending with a newline). */
  readonly usage: string;
  /**
   * Its flags' values → its part of `BridgeArgs` (called when `--pay` names it, its required
   * flags present).
   * @throws TollboothError `bad_arguments` naming the flag and what is wrong with it
   */
  parse(values: FlagValues, context: ParseContext): Args;
  /**
   * Its part of `runBridge`'s options (`undefined` when not given) → its part of
   * `withTollbooth`'s options, payments logged on `log`.
   * @throws TypeError for options it cannot use (before anything starts)
   */
  resolverOptions(options: Options | undefined, log: BridgeLog): Partial<WithTollboothOptions>;
}
