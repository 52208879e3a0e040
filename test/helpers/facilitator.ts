/**
 * A REAL x402 v2 facilitator for tests, in process, on 127.0.0.1: `x402Facilitator` from
 * `@x402/core/facilitator` with the `exact` EVM scheme of `@x402/evm/exact/facilitator`
 * registered for the chain's network (`eip155:31337`), settling from the chain's facilitator
 * account (viem wallet client on the anvil RPC). Signatures, simulation and on-chain settlement
 * are real; only the operator is local.
 *
 *   const chain = await startChain();
 *   const fac = await startFacilitator(chain, { authToken: "s3cret" });
 *   // POST `${fac.url}/verify`  {x402Version: 2, paymentPayload, paymentRequirements}
 *   //   → 200 {isValid, invalidReason?, invalidMessage?, payer}
 *   // POST `${fac.url}/settle`  same body → 200 {success, errorReason?, errorMessage?, transaction, network, payer}
 *   // GET  `${fac.url}/supported` → 200 {kinds: [{x402Version: 2, scheme: "exact", network: "eip155:31337"}, …], extensions, signers}
 *   fac.setDown(true);       // every request answers 503
 *   fac.calls();             // { verify, settle }: requests that reached the facilitator
 *   await fac.close();
 *
 * Errors: a body that is not JSON or lacks `paymentPayload`/`paymentRequirements` objects → 400
 * `{error}`; a scheme/network nothing is registered for, or any other throw from the library
 * → 500 `{error}`; a missing or wrong bearer token (when `authToken` is set) → 401 `{error}`;
 * unknown path/method → 404. Refusals from the scheme itself are 200 with `isValid: false` /
 * `success: false` (as the x402 reference facilitator answers). `@x402/core`'s
 * `HTTPFacilitatorClient({ url, createAuthHeaders })` talks to it as to a hosted facilitator.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { x402Facilitator } from "@x402/core/facilitator";
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { type Abi, createWalletClient, nonceManager, publicActions, http as viemHttp } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { Chain } from "./chain.ts";

/** Handle returned by {@link startFacilitator}. */
export interface Facilitator {
  /** Base URL, e.g. `http://127.0.0.1:41234` (endpoints `/verify`, `/settle`, `/supported`). */
  url: string;
  /** The address settlements are sent from (`chain.accounts.facilitator`). */
  signer: `0x${string}`;
  /** The in-process `x402Facilitator` behind the HTTP endpoints (e.g. to add hooks). */
  facilitator: x402Facilitator;
  /** While `down`, every request (any path) gets 503 `{error: "facilitator down"}` and is not counted. */
  setDown(down: boolean): void;
  /** Every answer waits `ms` milliseconds before it is written (0: none); for timeout tests. */
  setDelayMs(ms: number): void;
  /** `POST /verify` and `POST /settle` requests that passed auth and reached the facilitator. */
  calls(): { verify: number; settle: number };
  close(): Promise<void>;
}

/**
 * Starts the facilitator on 127.0.0.1 (free port) for `chain`.
 * @param chain from `startChain()`; its `accounts.facilitator` signs and pays gas
 * @param opts.authToken when set, every request must carry `Authorization: Bearer <authToken>` (else 401)
 * @param opts.confirmationTimeoutMs how long settle waits for a receipt (default 30 000 ms)
 */
export async function startFacilitator(
  chain: Chain,
  opts: { authToken?: string; confirmationTimeoutMs?: number } = {},
): Promise<Facilitator> {
  const account = privateKeyToAccount(chain.accounts.facilitator.privateKey, { nonceManager });
  const client = createWalletClient({ account, chain: chain.viemChain, transport: viemHttp(chain.rpcUrl), pollingInterval: 50 }).extend(
    publicActions,
  );
  const signer = toFacilitatorEvmSigner(
    {
      address: account.address,
      readContract: (a) => client.readContract({ address: a.address, abi: a.abi as Abi, functionName: a.functionName, args: a.args }),
      verifyTypedData: (a) => client.verifyTypedData(a as Parameters<typeof client.verifyTypedData>[0]),
      writeContract: (a) =>
        client.writeContract({
          address: a.address,
          abi: a.abi as Abi,
          functionName: a.functionName,
          args: a.args,
          gas: a.gas,
          dataSuffix: a.dataSuffix,
        }),
      sendTransaction: (a) => client.sendTransaction({ to: a.to, data: a.data }),
      waitForTransactionReceipt: (a) => client.waitForTransactionReceipt({ hash: a.hash, timeout: a.timeout }),
      getCode: (a) => client.getCode({ address: a.address }),
    },
    { confirmationTimeoutMs: opts.confirmationTimeoutMs ?? 30_000 },
  );
  const facilitator = new x402Facilitator();
  registerExactEvmScheme(facilitator, { signer, networks: chain.network });

  let down = false;
  let delayMs = 0;
  const counts = { verify: 0, settle: 0 };
  const timers = new Set<ReturnType<typeof setTimeout>>();

  async function route(req: http.IncomingMessage, raw: string): Promise<[number, unknown]> {
    if (down) return [503, { error: "facilitator down" }];
    if (opts.authToken !== undefined && req.headers.authorization !== `Bearer ${opts.authToken}`) return [401, { error: "unauthorized" }];
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/supported") return [200, facilitator.getSupported()];
    if (req.method !== "POST" || (path !== "/verify" && path !== "/settle")) return [404, { error: "not found" }];
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return [400, { error: "body is not JSON" }];
    }
    const { paymentPayload, paymentRequirements } = (body ?? {}) as { paymentPayload?: unknown; paymentRequirements?: unknown };
    if (!isObject(paymentPayload) || !isObject(paymentRequirements))
      return [400, { error: "paymentPayload and paymentRequirements are required objects" }];
    try {
      if (path === "/verify") {
        counts.verify++;
        return [
          200,
          await facilitator.verify(paymentPayload as unknown as PaymentPayload, paymentRequirements as unknown as PaymentRequirements),
        ];
      }
      counts.settle++;
      return [
        200,
        await facilitator.settle(paymentPayload as unknown as PaymentPayload, paymentRequirements as unknown as PaymentRequirements),
      ];
    } catch (err) {
      return [500, { error: err instanceof Error ? err.message : String(err) }];
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void route(req, Buffer.concat(chunks).toString("utf8")).then(([status, payload]) => {
        const write = () => {
          if (res.destroyed) return;
          res
            .writeHead(status, { "content-type": "application/json" })
            .end(JSON.stringify(payload, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)));
        };
        if (delayMs <= 0) return write();
        const t = setTimeout(() => {
          timers.delete(t);
          write();
        }, delayMs);
        timers.add(t);
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    signer: account.address,
    facilitator,
    setDown: (d) => {
      down = d;
    },
    setDelayMs: (ms) => {
      delayMs = ms;
    },
    calls: () => ({ ...counts }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
