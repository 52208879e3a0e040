/**
 * `npm start` takes every setting from the environment alone (no `.dev.vars`): the real script,
 * through npm, on free ports, with its state in a temporary folder. Each setting takes effect:
 * - TOLLBOOTH_ADMIN_TOKEN and TOLLBOOTH_ADMIN_PATH: the admin API answers at `/ops` with the
 *   token (401 without it);
 * - TOLLBOOTH_ROUTES: each route answers at its URL (the official SDK client, echo through the
 *   bundled server-everything), with its own policy; a route's `originSecret` (ORIGIN_A_SECRET)
 *   is there (without it the gateway refuses its configuration);
 * - TOLLBOOTH_POLICY: its bucket and plans are what the gateway publishes;
 * - TOLLBOOTH_LIGHTNING_SECRET: the Lightning stand-in accepts the gateway's macaroon and issues an invoice;
 * - TOLLBOOTH_FACILITATOR_AUTH (a value holding `$`, `'` and `"`): the facilitator receives it exactly;
 * - TOLLBOOTH_SECRET: the gateway's challenges are signed with it;
 * - the state folder: a key added with the documented command (`npm run keys -- add … --local
 *   --persist-to <folder>`) is recognised (`key:…`, its plan);
 * and the banner lists them. No secret appears on any process's command line, and `.dev.vars`
 * is neither read nor written.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/stack/ports.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";
import { connect, firstText } from "../helpers/mcp.ts";
import { type NpmStart, npmStart } from "../helpers/npm-start.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ADMIN_TOKEN = randomBytes(24).toString("hex");
const SECRET = randomBytes(32).toString("hex");
const ORIGIN_A_SECRET = randomBytes(24).toString("hex");
/** Holds `$` (wrangler expands `$NAME` in env files), `'` and `"`: it must arrive as written. */
const FACILITATOR_AUTH = `Bearer ${randomBytes(8).toString("hex")}$HOME'x"y`;
const NETWORK = "eip155:84532";
const ASSET = `0x${"a5".repeat(20)}`;
const PAY_TO = `0x${"7e".repeat(20)}`;

let ln: LightningStandin;
let facilitator: http.Server;
/** `Authorization` of each request the facilitator received. */
const facilitatorAuth: Array<string | undefined> = [];
let state: string;
let gatewayPort: number;
let originPort: number;
let run: NpmStart;
let base: string;
/** wrangler's settings file (`--env-file`), found on its command line. */
let settingsFile: string;
const devVarsBefore = existsSync(join(ROOT, ".dev.vars")) ? readFileSync(join(ROOT, ".dev.vars"), "utf8") : null;

const policy = (lnUrl: string, facilitatorUrl: string) => ({
  bucket: { capacity: 4, refillPerSecond: 0.01 },
  plans: { pro: { bucket: { capacity: 500, refillPerSecond: 5 } } },
  l402: { sats: 10, credits: 20 },
  lightning: { backend: "lnd", url: lnUrl, timeoutMs: 2_000 },
  x402: { mode: "credits", amount: "1000", credits: 20 },
  facilitator: {
    url: facilitatorUrl,
    payTo: PAY_TO,
    assets: [{ network: NETWORK, asset: ASSET, name: "USD Coin", version: "2" }],
    timeoutMs: 2_000,
  },
});

beforeAll(async () => {
  ln = await startLightningStandin();
  facilitator = http.createServer((req, res) => {
    facilitatorAuth.push(req.headers.authorization);
    req.resume();
    req.on("end", () =>
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ isValid: false, invalidReason: "invalid_exact_evm_payload_signature", payer: `0x${"11".repeat(20)}` })),
    );
  });
  await new Promise<void>((r) => facilitator.listen(0, "127.0.0.1", r));
  state = mkdtempSync(join(tmpdir(), "tollbooth-start-state-"));
  [gatewayPort, originPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${gatewayPort}`;
  const bundled = `http://127.0.0.1:${originPort}`;
  run = npmStart(
    {
      GATEWAY_PORT: String(gatewayPort),
      ORIGIN_PORT: String(originPort),
      TOLLBOOTH_ADMIN_TOKEN: ADMIN_TOKEN,
      TOLLBOOTH_ADMIN_PATH: "/ops",
      TOLLBOOTH_SECRET: SECRET,
      TOLLBOOTH_POLICY: JSON.stringify(policy(ln.url, `http://127.0.0.1:${(facilitator.address() as AddressInfo).port}`)),
      TOLLBOOTH_ROUTES: JSON.stringify([
        { name: "a", match: { path: "/a" }, origin: bundled, originSecret: "ORIGIN_A_SECRET" },
        { name: "b", match: { path: "/b" }, origin: bundled, policy: { bucket: { capacity: 2, refillPerSecond: 0.01 } } },
      ]),
      ORIGIN_A_SECRET,
      TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex,
      TOLLBOOTH_FACILITATOR_AUTH: FACILITATOR_AUTH,
      TOLLBOOTH_METRICS_FLUSH_MS: "1000",
    },
    ["--persist-to", state],
  );
  await run.waitFor(/^time {2,}caller/m);
}, 120_000);

afterAll(async () => {
  await run?.stop();
  await ln?.close();
  await new Promise<void>((r) => (facilitator ? facilitator.close(() => r()) : r()));
  if (state) rmSync(state, { recursive: true, force: true });
});

describe("npm start with every setting in the environment", () => {
  it("lists what is on: each route's MCP URL, the tiers, the admin API at its path, the state folder, where the settings came from", () => {
    const out = run.stdout();
    expect(out).toMatch(
      /^settings: TOLLBOOTH_POLICY, TOLLBOOTH_ROUTES, TOLLBOOTH_ADMIN_PATH, TOLLBOOTH_METRICS_FLUSH_MS, TOLLBOOTH_SECRET, TOLLBOOTH_LIGHTNING_SECRET, TOLLBOOTH_FACILITATOR_AUTH, TOLLBOOTH_ADMIN_TOKEN, ORIGIN_A_SECRET from the environment$/m,
    );
    expect(out).toContain(`route a: ${base}/a/mcp   <- point your MCP client here (origin http://127.0.0.1:${originPort})`);
    expect(out).toContain(`route b: ${base}/b/mcp   <- point your MCP client here (origin http://127.0.0.1:${originPort})`);
    expect(out).toContain(
      "tiers:    proof-of-work: on (plans pro, free); L402 (Lightning): on (plans pro, free); x402 (USDC): on (plans pro, free)",
    );
    expect(out).toContain(`admin:    ${base}/ops   the dashboard (its token: TOLLBOOTH_ADMIN_TOKEN, from the environment)`);
    expect(out).toContain(`state:    ${state}   (kept between runs`);
    expect(out).toContain(`keys:     npm run keys -- add <name> --local --persist-to ${state}   (callers send it in x-api-key)`);
    expect(out).toContain(`try:      GATEWAY_URL=${base}/a/mcp npm run demo`);
    // The bundled origin is at its base URL: nothing invites appending /mcp to ORIGIN_URL.
    expect(out).toContain(`origin:   http://127.0.0.1:${originPort}   (bundled server-everything, for the routes that name it)`);
  });

  it("TOLLBOOTH_ADMIN_TOKEN and TOLLBOOTH_ADMIN_PATH: the admin API answers at /ops with the token, 401 without", async () => {
    const withToken = await fetch(`${base}/ops/policy`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(withToken.status).toBe(200);
    const body = (await withToken.json()) as { bucket: { capacity: number }; plans: Record<string, unknown> };
    expect(body.bucket.capacity).toBe(4);
    expect(Object.keys(body.plans).sort()).toEqual(["free", "pro"]);
    expect((await fetch(`${base}/ops/policy`)).status).toBe(401);
    expect((await fetch(`${base}/ops/stats`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } })).status).toBe(401);
  });

  it("TOLLBOOTH_ROUTES (and route a's ORIGIN_A_SECRET): each route answers MCP at its URL, with its own policy", async () => {
    for (const name of ["a", "b"]) {
      const session = await connect(`${base}/${name}/mcp`);
      try {
        expect(firstText(await session.client.callTool({ name: "echo", arguments: { message: `via ${name}` } }))).toBe(`Echo: via ${name}`);
      } finally {
        await session.close(true);
      }
    }
    const a = (await (await fetch(`${base}/a/.well-known/tollbooth`)).json()) as { bucket: { capacity: number }; route: { name: string } };
    const b = (await (await fetch(`${base}/b/.well-known/tollbooth`)).json()) as { bucket: { capacity: number }; route: { name: string } };
    expect([a.route.name, a.bucket.capacity, b.route.name, b.bucket.capacity]).toEqual(["a", 4, "b", 2]);
  });

  it("TOLLBOOTH_SECRET: the gateway's challenges are signed with the given secret (route a's key derived from it)", async () => {
    const res = await fetch(`${base}/a/.well-known/tollbooth/challenge`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    // The route's signing key is derived from TOLLBOOTH_SECRET (shared/policy/routes.ts routeSecrets): a gateway
    // with another secret signs differently, so the same challenge fields never carry this signature.
    const { routeSecrets } = await import("../../shared/policy/routes.ts");
    const { importKeyring } = await import("../../shared/credentials/keys.ts");
    const ring = await importKeyring(routeSecrets(SECRET, "a"));
    expect(JSON.stringify(body)).toContain(`"kid":"${ring.signer.kid}"`);
    const other = await importKeyring(routeSecrets(randomBytes(32).toString("hex"), "a"));
    expect(JSON.stringify(body)).not.toContain(`"kid":"${other.signer.kid}"`);
  });

  it("TOLLBOOTH_LIGHTNING_SECRET: the Lightning backend accepts the gateway's macaroon and issues the invoice", async () => {
    const before = ln.invoices().length;
    const res = await fetch(`${base}/a/.well-known/tollbooth/challenge?type=l402`);
    const body = (await res.json()) as { invoice?: string };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(ln.invoices()).toHaveLength(before + 1);
    expect(body.invoice).toBe(ln.invoices().at(-1)!.bolt11);
  });

  it("TOLLBOOTH_FACILITATOR_AUTH: the facilitator receives it exactly ($, ' and \" included)", async () => {
    const now = Math.floor(Date.now() / 1000);
    // Signed for real (the gateway checks the signature itself before the facilitator is asked).
    const account = privateKeyToAccount(generatePrivateKey());
    const authorization = {
      from: account.address,
      to: PAY_TO,
      value: "1000",
      validAfter: String(now - 60),
      validBefore: String(now + 600),
      nonce: `0x${randomBytes(32).toString("hex")}` as const,
    };
    const signature = await account.signTypedData({
      domain: { name: "USD Coin", version: "2", chainId: 84532, verifyingContract: ASSET as `0x${string}` },
      types: {
        TransferWithAuthorization: [
          { name: "from", type: "address" },
          { name: "to", type: "address" },
          { name: "value", type: "uint256" },
          { name: "validAfter", type: "uint256" },
          { name: "validBefore", type: "uint256" },
          { name: "nonce", type: "bytes32" },
        ],
      },
      primaryType: "TransferWithAuthorization",
      message: {
        ...authorization,
        to: PAY_TO as `0x${string}`,
        value: 1000n,
        validAfter: BigInt(authorization.validAfter),
        validBefore: BigInt(authorization.validBefore),
      },
    });
    const payment = {
      x402Version: 2,
      resource: { url: `${base}/a/mcp`, description: "test", mimeType: "application/json" },
      accepted: {
        scheme: "exact",
        network: NETWORK,
        asset: ASSET,
        amount: "1000",
        payTo: PAY_TO,
        maxTimeoutSeconds: 120,
        extra: { name: "USD Coin", version: "2" },
      },
      payload: { signature, authorization },
    };
    const res = await fetch(`${base}/a/.well-known/tollbooth/verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "x402", payment }),
    });
    expect(res.status).toBe(402); // the stand-in facilitator's /verify calls it invalid
    expect(facilitatorAuth).toContain(FACILITATOR_AUTH);
  });

  it("the state folder: a key added with the documented local command is recognised", async () => {
    // docs/identity.md: npm run keys -- add dev-laptop --local --persist-to .wrangler/state (here: the folder npm start was given).
    const add = spawnSync("npm", ["run", "-s", "keys", "--", "add", "dev-laptop", "--plan", "pro", "--local", "--persist-to", state], {
      cwd: ROOT,
      encoding: "utf8",
      env: {
        PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
        HOME: process.env.HOME,
        TOLLBOOTH_POLICY: JSON.stringify(policy(ln.url, "http://127.0.0.1:9")),
      },
    });
    expect(add.status, add.stderr).toBe(0);
    const key = add.stdout.trim();
    expect(key).toMatch(/^tb_[A-Za-z0-9_-]{43}$/);
    const res = await fetch(`${base}/a/.well-known/tollbooth/status`, { headers: { "x-api-key": key } });
    const status = (await res.json()) as { caller: string; plan: string; verified: boolean };
    // docs/identity.md: `key:` + the first 16 bytes (hex) of SHA-256(key).
    expect(status).toEqual(
      expect.objectContaining({
        caller: `key:${createHash("sha256").update(key).digest("hex").slice(0, 32)}`,
        plan: "pro",
        verified: true,
      }),
    );
    // An invented key stays unverified: the network's caller.
    const invented = (await (
      await fetch(`${base}/a/.well-known/tollbooth/status`, { headers: { "x-api-key": `tb_${"A".repeat(43)}` } })
    ).json()) as { caller: string };
    expect(invented.caller).toBe("ip:127.0.0.1");
  });

  it("puts no secret on any command line (they are in a file only this user reads), and neither reads nor writes .dev.vars", () => {
    const secrets = [ADMIN_TOKEN, SECRET, ORIGIN_A_SECRET, ln.macaroonHex, FACILITATOR_AUTH];
    const lines: string[] = [];
    for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
      try {
        lines.push(readFileSync(`/proc/${pid}/cmdline`, "utf8"));
      } catch {
        // gone
      }
    }
    const wrangler = lines.find((l) => l.includes("wrangler") && l.split("\0").includes(String(gatewayPort)))!.split("\0");
    for (const secret of secrets) expect(lines.filter((l) => l.includes(secret))).toEqual([]);
    // The secrets are in wrangler's settings file, which only this user can read.
    settingsFile = wrangler[wrangler.indexOf("--env-file") + 1]!;
    expect(readFileSync(settingsFile, "utf8")).toContain(ADMIN_TOKEN);
    expect(statSync(settingsFile).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(settingsFile)).mode & 0o777).toBe(0o700);
    expect(existsSync(join(ROOT, ".dev.vars")) ? readFileSync(join(ROOT, ".dev.vars"), "utf8") : null).toBe(devVarsBefore);
  });
});

describe("npm start stops what it started", () => {
  it("on SIGTERM: the gateway and the bundled origin stop, the state folder stays", async () => {
    await run.stop();
    const down = (port: number) =>
      fetch(`http://127.0.0.1:${port}/`).then(
        () => false,
        () => true,
      );
    expect(await down(gatewayPort)).toBe(true);
    expect(await down(originPort)).toBe(true);
    expect(existsSync(join(state, "v3"))).toBe(true);
    expect(existsSync(dirname(settingsFile))).toBe(false);
  });
});
