/**
 * A real, local EVM chain for x402 tests: anvil (npm `@foundry-rs/anvil`) on 127.0.0.1 with
 * `TestUSDC` (test/helpers/contracts/TestUSDC.sol: ERC-20, 6 decimals, EIP-712 domain
 * "USD Coin"/"2", EIP-3009) deployed, and a Multicall3 at its canonical address (the x402 EVM
 * facilitator reads through it when it explains a failed simulation).
 *
 *   const chain = await startChain();           // ~1-5 s: spawn anvil, compile (cached), deploy
 *   chain.network;                              // "eip155:31337"
 *   chain.usdc;                                 // TestUSDC address
 *   const payer = chain.accounts.payers[0]!;    // { address, privateKey }, holds 1000 USDC
 *   await chain.mint(payer.address, 5_000_000n); // +5 USDC (atomic units, 6 decimals)
 *   await chain.balanceOf(chain.accounts.payTo.address); // bigint, atomic units
 *   await chain.close();
 *
 * Accounts are anvil's default funded dev accounts (10 000 ETH each, mnemonic
 * "test test … junk"): #0 deployer (deploys and mints), #1 facilitator (sends settlements),
 * #2 payTo (the payee), #3–#9 payers. Keeping them apart means the helper's mints never race
 * the facilitator's transactions for a nonce.
 *
 * The contracts are deployed from their committed compiler output
 * (test/helpers/contracts/TestUSDC.compiled.json, made by `solc` from the .sol sources next to
 * it; test/unit/helpers/chain.test.ts recompiles and checks it is identical).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import {
  type Abi,
  type Account,
  type Address,
  createPublicClient,
  createTestClient,
  createWalletClient,
  getAddress,
  type Hex,
  http,
  type PublicClient,
  parseAbi,
  type Transport,
  type Chain as ViemChain,
  type WalletClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { anvil as anvilChain } from "viem/chains";

/** The chain id anvil runs with. */
export const CHAIN_ID = 31337;
/** The CAIP-2 network id of the local chain, as x402 v2 names it. */
export const NETWORK = "eip155:31337";
/** TestUSDC's EIP-712 domain name (= `name()`); goes in `PaymentRequirements.extra.name`. */
export const USDC_NAME = "USD Coin";
/** TestUSDC's EIP-712 domain version (= `version()`); goes in `PaymentRequirements.extra.version`. */
export const USDC_VERSION = "2";
/** TestUSDC's decimals: 1 USDC = 1_000_000 atomic units. */
export const USDC_DECIMALS = 6;
/** What {@link startChain} mints to each payer by default: 1000 USDC, atomic units. */
export const PAYER_START_BALANCE = 1_000_000_000n;
/** Where Multicall3 lives on every chain (and where {@link startChain} puts it). */
export const MULTICALL3_ADDRESS: Address = "0xcA11bde05977b3631167028862bE2a173976CA11";

/**
 * The part of TestUSDC's ABI tests call, typed for viem (the full ABI comes from the compiler,
 * see {@link compileContracts}). Units: `value`/`amount` atomic (6 decimals); `validAfter`/
 * `validBefore` unix seconds; `nonce` 32 random bytes.
 */
export const TEST_USDC_ABI = parseAbi([
  "function name() view returns (string)",
  "function symbol() view returns (string)",
  "function version() view returns (string)",
  "function decimals() view returns (uint8)",
  "function totalSupply() view returns (uint256)",
  "function balanceOf(address account) view returns (uint256)",
  "function allowance(address owner, address spender) view returns (uint256)",
  "function DOMAIN_SEPARATOR() view returns (bytes32)",
  "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)",
  "function authorizationState(address authorizer, bytes32 nonce) view returns (bool)",
  "function mint(address to, uint256 amount)",
  "function transfer(address to, uint256 value) returns (bool)",
  "function approve(address spender, uint256 value) returns (bool)",
  "function transferFrom(address from, address to, uint256 value) returns (bool)",
  "function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)",
  "function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature)",
  "function receiveWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)",
  "function receiveWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature)",
  "function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)",
  "function cancelAuthorization(address authorizer, bytes32 nonce, bytes signature)",
  "event Transfer(address indexed from, address indexed to, uint256 value)",
  "event Approval(address indexed owner, address indexed spender, uint256 value)",
  "event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)",
  "event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce)",
]);

/**
 * anvil's default dev keys (mnemonic "test test test test test test test test test test test
 * junk", m/44'/60'/0'/0/i), i = 0…9. Public, well-known test keys: never use them elsewhere.
 */
export const ANVIL_PRIVATE_KEYS: readonly Hex[] = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
  "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
  "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
  "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
  "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
  "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
  "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
  "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/** A funded dev account: checksummed address and its private key (32 bytes hex). */
export interface ChainAccount {
  address: Address;
  privateKey: Hex;
}

/** One compiled contract. `bytecode` deploys it (creation code); `deployedBytecode` is its runtime code. */
export interface CompiledContract {
  abi: Abi;
  bytecode: Hex;
  deployedBytecode: Hex;
}

/** Handle returned by {@link startChain}. */
export interface Chain {
  /** anvil's JSON-RPC URL, e.g. `http://127.0.0.1:41865`. */
  rpcUrl: string;
  /** 31337. */
  chainId: typeof CHAIN_ID;
  /** `"eip155:31337"` (CAIP-2). */
  network: typeof NETWORK;
  /** The viem chain description (anvil, id 31337, with this `rpcUrl`). */
  viemChain: ViemChain;
  /** TestUSDC's address (checksummed). */
  usdc: Address;
  accounts: {
    /** #0: deployed TestUSDC, sends the helper's mints. */
    deployer: ChainAccount;
    /** #1: the x402 facilitator's settling account (pays gas). */
    facilitator: ChainAccount;
    /** #2: the payee (`payTo`); starts with 0 USDC. */
    payTo: ChainAccount;
    /** #3…#9: paying wallets, each minted {@link PAYER_START_BALANCE} (1000 USDC) at start. */
    payers: ChainAccount[];
  };
  /** A public client on `rpcUrl` (polls every 50 ms). */
  publicClient: PublicClient;
  /**
   * Mints `atomic` TestUSDC units (6 decimals) to `to` and waits until it is mined.
   * Mints are sent one after another from the deployer. Returns the transaction hash.
   * @throws if the transaction reverts (e.g. `to` is the zero address)
   */
  mint(to: Address, atomic: bigint): Promise<Hex>;
  /** TestUSDC balance of `address`, atomic units (6 decimals). */
  balanceOf(address: Address): Promise<bigint>;
  /** Whether `authorizer` has used (or canceled) the EIP-3009 `nonce` (32 bytes hex). */
  authorizationState(authorizer: Address, nonce: Hex): Promise<boolean>;
  /** A wallet client on `rpcUrl` signing and sending as `account` (polls every 50 ms). */
  walletClient(account: ChainAccount): WalletClient<Transport, ViemChain, Account>;
  /** Stops anvil (SIGTERM, then SIGKILL after 2 s). Idempotent. */
  close(): Promise<void>;
}

const CONTRACTS_DIR = fileURLToPath(new URL("./contracts/", import.meta.url));
/** The committed compiler output: {@link CompiledContracts} as JSON (see {@link renderCompiledContracts}). */
export const COMPILED_JSON_PATH = `${CONTRACTS_DIR}TestUSDC.compiled.json`;

/** What the contracts compile to, as committed in {@link COMPILED_JSON_PATH}. */
export interface CompiledContracts {
  /** e.g. "0.8.37+commit.f401782d.Emscripten.clang". */
  solcVersion: string;
  TestUSDC: CompiledContract;
  Multicall3: CompiledContract;
}

let compiling: Promise<CompiledContracts> | undefined;
let loaded: CompiledContracts | undefined;

/**
 * Compiles test/helpers/contracts/{TestUSDC,Multicall3}.sol from source with `solc` (npm, wasm;
 * optimizer 200 runs, EVM "cancun"), once per process (the promise is cached). Takes ~4–10 s
 * (loading the wasm compiler dominates), which is why {@link startChain} deploys the committed
 * output ({@link loadCompiledContracts}) instead; test/unit/helpers/chain.test.ts checks the
 * two agree.
 * @throws if solc reports an error (warnings are ignored)
 */
export function compileContracts(): Promise<CompiledContracts> {
  compiling ??= (async () => {
    const solc = (await import("solc")).default;
    const sources: Record<string, { content: string }> = {};
    for (const file of ["TestUSDC.sol", "Multicall3.sol"]) sources[file] = { content: readFileSync(CONTRACTS_DIR + file, "utf8") };
    const input = {
      language: "Solidity",
      sources,
      settings: {
        optimizer: { enabled: true, runs: 200 },
        evmVersion: "cancun",
        outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
      },
    };
    const output = JSON.parse(solc.compile(JSON.stringify(input))) as SolcOutput;
    const errors = (output.errors ?? []).filter((e) => e.severity === "error");
    if (errors.length > 0) throw new Error(`solc: ${errors.map((e) => e.formattedMessage).join("\n")}`);
    const pick = (file: string, name: string): CompiledContract => {
      const c = output.contracts?.[file]?.[name];
      if (!c) throw new Error(`solc gave no output for ${file}:${name}`);
      return { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}`, deployedBytecode: `0x${c.evm.deployedBytecode.object}` };
    };
    return {
      solcVersion: solc.version() as string,
      TestUSDC: pick("TestUSDC.sol", "TestUSDC"),
      Multicall3: pick("Multicall3.sol", "Multicall3"),
    };
  })();
  compiling.catch(() => {
    compiling = undefined;
  });
  return compiling;
}

/** The text of {@link COMPILED_JSON_PATH} for `compiled` (2-space JSON, trailing newline). */
export function renderCompiledContracts(compiled: CompiledContracts): string {
  return `${JSON.stringify(compiled, null, 2)}\n`;
}

/**
 * Recompiles and rewrites {@link COMPILED_JSON_PATH}; run after editing a .sol file:
 * `node -e 'import("./test/helpers/chain.ts").then((m) => m.writeCompiledContracts())'`
 */
export async function writeCompiledContracts(): Promise<void> {
  writeFileSync(COMPILED_JSON_PATH, renderCompiledContracts(await compileContracts()));
}

/**
 * The committed compiler output (read once, cached).
 * @throws if {@link COMPILED_JSON_PATH} is missing or not JSON
 */
export function loadCompiledContracts(): CompiledContracts {
  loaded ??= JSON.parse(readFileSync(COMPILED_JSON_PATH, "utf8")) as CompiledContracts;
  return loaded;
}

interface SolcOutput {
  errors?: { severity: string; formattedMessage: string }[];
  contracts?: Record<string, Record<string, { abi: Abi; evm: { bytecode: { object: string }; deployedBytecode: { object: string } } }>>;
}

/** Path of the anvil binary: the platform package's, else the npm wrapper in node_modules/.bin. */
function anvilBinary(): string {
  const require = createRequire(import.meta.url);
  try {
    const pkg = require.resolve(`@foundry-rs/anvil-${process.platform}-${process.arch === "x64" ? "amd64" : process.arch}/package.json`);
    const bin = pkg.replace(/package\.json$/, "bin/anvil");
    if (existsSync(bin)) return bin;
  } catch {
    // fall through to the wrapper
  }
  return fileURLToPath(new URL("../../node_modules/.bin/anvil", import.meta.url));
}

/** Spawns anvil on 127.0.0.1 (port 0: the OS picks) and resolves with its port once it listens. */
function spawnAnvil(timeoutMs: number): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(anvilBinary(), ["--host", "127.0.0.1", "--port", "0", "--chain-id", String(CHAIN_ID), "--accounts", "10"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    let done = false;
    const finish = (err: Error | undefined, port?: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        proc.kill("SIGKILL");
        reject(err);
      } else resolve({ proc, port: port! });
    };
    const timer = setTimeout(() => finish(new Error(`anvil did not listen within ${timeoutMs} ms:\n${out.slice(-2000)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      if (done) return; // keep draining, stop collecting
      out += chunk.toString("utf8");
      const m = /Listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) finish(undefined, Number(m[1]));
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("error", (e) => finish(e));
    proc.once("exit", (code, signal) => finish(new Error(`anvil exited (${code ?? signal}) before listening:\n${out.slice(-2000)}`)));
  });
}

/**
 * Starts a local chain: anvil on 127.0.0.1 (free port, chain id 31337, 10 funded accounts),
 * Multicall3 placed at {@link MULTICALL3_ADDRESS}, TestUSDC deployed by account #0, and
 * `opts.payerBalance` (default {@link PAYER_START_BALANCE}, 1000 USDC) minted to each payer.
 * @param opts.payerBalance atomic units minted to each payer at start (0n: none)
 * @param opts.startTimeoutMs how long to wait for anvil to listen (default 15 000 ms)
 * @throws if anvil does not start, or the deployment or a mint reverts (anvil is stopped then)
 */
export async function startChain(opts: { payerBalance?: bigint; startTimeoutMs?: number } = {}): Promise<Chain> {
  const contracts = loadCompiledContracts();
  const { proc, port } = await spawnAnvil(opts.startTimeoutMs ?? 15_000);
  const killOnExit = () => proc.kill("SIGKILL");
  process.once("exit", killOnExit);
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      process.removeListener("exit", killOnExit);
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      const force = setTimeout(() => proc.kill("SIGKILL"), 2000);
      proc.once("exit", () => {
        clearTimeout(force);
        resolve();
      });
      proc.kill("SIGTERM");
    });
    return closed;
  };

  try {
    const rpcUrl = `http://127.0.0.1:${port}`;
    const viemChain: ViemChain = { ...anvilChain, id: CHAIN_ID, rpcUrls: { default: { http: [rpcUrl] } } };
    const publicClient = createPublicClient({ chain: viemChain, transport: http(rpcUrl), pollingInterval: 50 }) as PublicClient;
    const walletClient = (account: ChainAccount) =>
      createWalletClient({
        account: privateKeyToAccount(account.privateKey),
        chain: viemChain,
        transport: http(rpcUrl),
        pollingInterval: 50,
      });
    const all: ChainAccount[] = ANVIL_PRIVATE_KEYS.map((privateKey) => ({ address: privateKeyToAccount(privateKey).address, privateKey }));
    const [deployer, facilitator, payTo, ...payers] = all as [ChainAccount, ChainAccount, ChainAccount, ...ChainAccount[]];

    const existing = await publicClient.getCode({ address: MULTICALL3_ADDRESS });
    if (!existing || existing === "0x") {
      await createTestClient({ mode: "anvil", chain: viemChain, transport: http(rpcUrl) }).setCode({
        address: MULTICALL3_ADDRESS,
        bytecode: contracts.Multicall3.deployedBytecode,
      });
    }

    const deployerWallet = walletClient(deployer);
    const deployHash = await deployerWallet.deployContract({ abi: contracts.TestUSDC.abi, bytecode: contracts.TestUSDC.bytecode });
    const deployReceipt = await publicClient.waitForTransactionReceipt({ hash: deployHash });
    if (deployReceipt.status !== "success" || !deployReceipt.contractAddress) throw new Error(`TestUSDC deployment failed (${deployHash})`);
    const usdc = getAddress(deployReceipt.contractAddress);

    let queue: Promise<unknown> = Promise.resolve();
    const mint = (to: Address, atomic: bigint): Promise<Hex> => {
      const run = queue.then(async () => {
        const hash = await deployerWallet.writeContract({ address: usdc, abi: TEST_USDC_ABI, functionName: "mint", args: [to, atomic] });
        const receipt = await publicClient.waitForTransactionReceipt({ hash });
        if (receipt.status !== "success") throw new Error(`mint(${to}, ${atomic}) reverted (${hash})`);
        return hash;
      });
      queue = run.catch(() => undefined);
      return run;
    };
    const payerBalance = opts.payerBalance ?? PAYER_START_BALANCE;
    if (payerBalance > 0n) await Promise.all(payers.map((p) => mint(p.address, payerBalance)));

    return {
      rpcUrl,
      chainId: CHAIN_ID,
      network: NETWORK,
      viemChain,
      usdc,
      accounts: { deployer, facilitator, payTo, payers },
      publicClient,
      mint,
      balanceOf: (address) => publicClient.readContract({ address: usdc, abi: TEST_USDC_ABI, functionName: "balanceOf", args: [address] }),
      authorizationState: (authorizer, nonce) =>
        publicClient.readContract({ address: usdc, abi: TEST_USDC_ABI, functionName: "authorizationState", args: [authorizer, nonce] }),
      walletClient,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
