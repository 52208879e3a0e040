/**
 * L402 through the real gateway (`wrangler dev`, workerd) in front of server-everything,
 * with invoices from a Lightning stand-in (test/helpers/lightning-standin.ts: LND REST,
 * real signed regtest BOLT11, and the payer's node revealing the preimage). Everything the
 * tests check is read with peers that are not tollbooth's code: the `bolt11` package
 * (decodes and checks the invoice signature), the `macaroon` package (reads and attenuates
 * the macaroon), node:crypto. docs/wire-contract.md §10 is the contract.
 */

import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import bolt11 from "bolt11";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PayEvent, type SolveEvent, withTollbooth } from "../../packages/tollbooth-client/src/index.ts";
import { lndWallet } from "../../packages/tollbooth-client/src/payers/lightning-wallet.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";
import { connect, firstText, MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

/** The `macaroon` package (no types shipped): only what these tests read. */
const macaroon = createRequire(import.meta.url)("macaroon") as {
  importMacaroon(bytes: Uint8Array): { identifier: Uint8Array; caveats: Array<{ identifier: Uint8Array }> };
};

const PRICE = { sats: 10, credits: 5 };
const policy = (lnUrl: string, service = "tollbooth") => ({
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  challenge: { difficulty: 8, credits: 4 },
  l402: PRICE,
  // Room for the many unverified callers these tests make (the invoice budget's reserve for
  // trusted callers is test/e2e/cheap-checks.test.ts's).
  lightning: { backend: "lnd", url: lnUrl, service, timeoutMs: 1_000, invoicesPerSecond: 20 },
});

let origin: Origin;
let ln: LightningStandin;
let gw: Gateway;
let other: Gateway;

beforeAll(async () => {
  [origin, ln] = await Promise.all([startOrigin(), startLightningStandin()]);
  gw = await startGateway({ originUrl: origin.url, policy: policy(ln.url), vars: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex } });
  // Another service run with the same secret: its macaroons verify here, their caveats do not.
  other = await startGateway({
    originUrl: origin.url,
    policy: policy(ln.url, "elsewhere"),
    secret: gw.secret,
    vars: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex },
  });
});

afterAll(async () => {
  await Promise.all([gw?.close(), other?.close()]);
  await Promise.all([origin?.close(), ln?.close()]);
});

let networks = 0;
/**
 * A network of its own (`CF-Connecting-IP`): the gateway lets the unverified callers of one
 * network have 2 fresh invoices a minute (docs/costs.md), and these tests make many callers.
 */
const network = () => `198.18.${Math.floor(++networks / 250)}.${networks % 250}`;
const caller = (label: string) => ({ "x-api-key": `${label}-${randomBytes(6).toString("hex")}`, "cf-connecting-ip": network() });
let rpcId = 0;
const toolCall = () =>
  JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });
/** Requests the origin has received so far. */
const received = () => origin.requests().length;

/** initialize + notifications/initialized (both cost 0): the headers of a live MCP session. */
async function openSession(g: Gateway, who: Record<string, string>): Promise<Record<string, string>> {
  return { ...who, ...(await openRawSession(`${g.url}/mcp`, who, "l402-test")) };
}

/** A priced `tools/call`. @returns status, headers and the JSON body (null for SSE) */
async function call(g: Gateway, headers: Record<string, string>) {
  const res = await fetch(`${g.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: toolCall() });
  const text = await res.text();
  const body = (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : null;
  return { status: res.status, headers: res.headers, body };
}

type Call = Awaited<ReturnType<typeof call>>;

/** The L402 entry of a 402's `error.data.challenges`. */
function l402Of(r: Call): {
  macaroon: string;
  token: string;
  invoice: string;
  paymentHash: string;
  sats: number;
  credits: number;
  header: string;
} {
  const entry = r.body.error.data.challenges.find((c: { type: string }) => c.type === "l402");
  expect(entry, JSON.stringify(r.body)).toBeDefined();
  return entry;
}

/** Spend the caller's free unit, then get a 402 with both challenges. */
async function overBudget(g: Gateway, session: Record<string, string>): Promise<Call> {
  for (;;) {
    const r = await call(g, session);
    if (r.status === 402) return r;
    expect(r.status).toBe(200);
  }
}

/** Pay an invoice as the payer's node does (LND REST), outside tollbooth's code. @returns the preimage, hex */
async function pay(invoice: string): Promise<string> {
  const res = await fetch(`${ln.url}/v1/channels/transactions`, {
    method: "POST",
    headers: { "grpc-metadata-macaroon": ln.macaroonHex, "content-type": "application/json" },
    body: JSON.stringify({ payment_request: invoice }),
  });
  const out = (await res.json()) as { payment_error: string; payment_preimage: string };
  expect(out.payment_error).toBe("");
  return Buffer.from(out.payment_preimage, "base64").toString("hex");
}

/** A paid credential for a session of `g`: `<macaroon>:<preimage>`. */
async function paidCredential(
  g: Gateway,
  session: Record<string, string>,
): Promise<{ credential: string; offer: ReturnType<typeof l402Of> }> {
  const offer = l402Of(await overBudget(g, session));
  return { credential: `${offer.macaroon}:${await pay(offer.invoice)}`, offer };
}

/** A refusal of the gateway itself: `status` with `error.data.reason`, fresh PoW and L402 challenges. */
function expectRefused(r: Call, status: 401 | 402, reason: string): void {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.body.error).toMatchObject({ code: status, data: { reason } });
  const www = r.headers.get("www-authenticate") ?? "";
  expect(www).toMatch(/^PowChallenge /);
  expect(www).toMatch(/, L402 version="0", token="[A-Za-z0-9+/=]+", macaroon="[A-Za-z0-9+/=]+", invoice="lnbcrt[0-9a-z]+"$/);
}

/**
 * Attenuate a macaroon (base64 V2) with a first-party `caveat`, as any holder may, computed
 * here with node:crypto (the `macaroon` package cannot export more than 3 caveats): the new
 * signature is HMAC-SHA256(old signature, caveat) and the caveat goes before the end of
 * the caveat section.
 */
function attenuate(mac: string, caveat: string): string {
  const bytes = Buffer.from(mac, "base64");
  const sig = bytes.subarray(bytes.length - 32);
  expect([bytes[bytes.length - 34], bytes[bytes.length - 33], bytes[bytes.length - 35]]).toEqual([6, 32, 0]);
  const text = Buffer.from(caveat);
  const next = createHmac("sha256", sig).update(text).digest();
  const head = bytes.subarray(0, bytes.length - 35);
  return Buffer.concat([head, Buffer.from([2, text.length]), text, Buffer.from([0, 0, 6, 32]), next]).toString("base64");
}

describe("the L402 challenge", () => {
  it("a 402 offers proof of work, then L402 in its own WWW-Authenticate line, and both in error.data.challenges", async () => {
    const session = await openSession(gw, caller("offer"));
    const r = await overBudget(gw, session);
    const www = r.headers.get("www-authenticate")!;
    const l402 = l402Of(r);
    expect(r.body.error.data.challenges[0].type).toBe("pow");
    expect(r.body.error.data.challenges[1].type).toBe("l402");
    expect(www.startsWith("PowChallenge ")).toBe(true);
    expect(www.endsWith(`, ${l402.header}`)).toBe(true);
    expect(l402.header).toBe(`L402 version="0", token="${l402.macaroon}", macaroon="${l402.macaroon}", invoice="${l402.invoice}"`);
    expect(l402.token).toBe(l402.macaroon);
    expect(l402).toMatchObject({ sats: PRICE.sats, credits: PRICE.credits });
    expect(r.body.error.message).toMatch(/pay the Lightning invoice/);

    // The invoice: a signed regtest BOLT11 for the price, for the macaroon's payment hash.
    const decoded = bolt11.decode(l402.invoice, { bech32: "bcrt", pubKeyHash: 111, scriptHash: 196, validWitnessVersions: [0, 1] });
    expect(decoded.satoshis).toBe(PRICE.sats);
    expect(decoded.tags.find((t) => t.tagName === "payment_hash")?.data).toBe(l402.paymentHash);
    expect(ln.invoices().some((i) => i.paymentHash === l402.paymentHash && i.state === "OPEN")).toBe(true);

    // The macaroon, read by the `macaroon` package: V2, identifier version 0 ‖ payment hash ‖ token id.
    const m = macaroon.importMacaroon(Buffer.from(l402.macaroon, "base64"));
    const id = Buffer.from(m.identifier);
    expect(id.length).toBe(66);
    expect(id.readUInt16BE(0)).toBe(0);
    expect(id.subarray(2, 34).toString("hex")).toBe(l402.paymentHash);
    const caveats = m.caveats.map((c) => Buffer.from(c.identifier).toString());
    expect(caveats[0]).toBe("services=tollbooth:0");
    expect(caveats).toContain(`tollbooth_credits=${PRICE.credits}`);
    expect(caveats.some((c) => /^tollbooth_valid_until=\d+$/.test(c))).toBe(true);
    expect(caveats.some((c) => /^tollbooth_caller=[A-Za-z0-9_-]{22}$/.test(c))).toBe(true);
  });

  it("GET /challenge?type=l402 gives an L402 challenge alone; an unknown type gets 400, at /challenge and at /verify", async () => {
    const who = caller("endpoint");
    const res = await fetch(`${gw.url}/.well-known/tollbooth/challenge?type=l402`, { headers: who });
    expect(res.status).toBe(200);
    const ch = (await res.json()) as { type: string; header: string; invoice: string };
    expect(ch.type).toBe("l402");
    expect(res.headers.get("www-authenticate")).toBe(ch.header);
    expect(bolt11.decode(ch.invoice, { bech32: "bcrt", pubKeyHash: 111, scriptHash: 196, validWitnessVersions: [0, 1] }).satoshis).toBe(
      PRICE.sats,
    );
    const bad = await fetch(`${gw.url}/.well-known/tollbooth/challenge?type=x402`, { headers: who });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/offered: pow, l402/);
    const verify = await fetch(`${gw.url}/.well-known/tollbooth/verify`, {
      method: "POST",
      headers: { "content-type": "application/json", ...who },
      body: JSON.stringify({ type: "bogus" }),
    });
    expect(verify.status).toBe(400);
    expect(((await verify.json()) as { message: string }).message).toMatch(/Unknown credential type "bogus"/);
  });

  it("the policy endpoint publishes the price and the credential header, never the backend", async () => {
    const p = (await (await fetch(`${gw.url}/.well-known/tollbooth`)).json()) as Record<string, any>;
    expect(p.challenge.types).toEqual(["pow", "l402"]);
    expect(p.l402).toMatchObject(PRICE);
    expect(p.lightning).toEqual({ service: "tollbooth", invoiceExpirySeconds: 600, credentialHeader: "Tollbooth-L402" });
    expect(JSON.stringify(p)).not.toContain(ln.url.replace("http://", ""));
  });
});

describe("paying", () => {
  it("Authorization: L402 <macaroon>:<preimage> gets through and spends its credits one per call, then 402 l402_exhausted", async () => {
    const session = await openSession(gw, caller("payer"));
    const { credential } = await paidCredential(gw, session);
    const before = received();
    for (let left = PRICE.credits - 1; left >= 0; left--) {
      const r = await call(gw, { ...session, authorization: `L402 ${credential}` });
      expect(r.status).toBe(200);
      expect(r.headers.get("tollbooth-credits")).toBe(String(left));
    }
    expect(received() - before).toBe(PRICE.credits);
    expectRefused(await call(gw, { ...session, authorization: `L402 ${credential}` }), 402, "l402_exhausted");
    expect(received() - before).toBe(PRICE.credits);
  });

  it("LSAT is accepted, and Tollbooth-L402 beside an OAuth Authorization: the origin gets the OAuth header, never the L402 credential", async () => {
    const session = await openSession(gw, caller("oauth"));
    const { credential } = await paidCredential(gw, session);
    origin.reset();
    expect((await call(gw, { ...session, authorization: `LSAT ${credential}` })).status).toBe(200);
    // The LSAT Authorization is not forwarded either.
    expect(origin.requests()).toHaveLength(1);
    expect(origin.requests()[0]!.headers.authorization).toBeUndefined();
    expect(JSON.stringify(origin.requests()[0]!.headers)).not.toContain(credential.split(":")[1]);
    origin.reset();
    const r = await call(gw, { ...session, authorization: "Bearer origin-token", "tollbooth-l402": credential });
    expect(r.status).toBe(200);
    const seen = origin.requests();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe("Bearer origin-token");
    expect(seen[0]!.headers["tollbooth-l402"]).toBeUndefined();
    expect(JSON.stringify(seen[0]!.headers)).not.toContain(credential.split(":")[1]);
    // And an L402 Authorization is never forwarded either.
    origin.reset();
    expect((await call(gw, { ...session, authorization: `L402 ${credential}` })).status).toBe(200);
    expect(origin.requests()).toHaveLength(1);
    expect(origin.requests()[0]!.headers.authorization).toBeUndefined();
    expect(JSON.stringify(origin.requests()[0]!.headers)).not.toContain(credential.split(":")[1]);
  });

  it("one preimage buys one set of credits, however many requests carry it at once", async () => {
    const session = await openSession(gw, caller("race"));
    const { credential } = await paidCredential(gw, session);
    const before = received();
    const results = await Promise.all(Array.from({ length: 12 }, () => call(gw, { ...session, authorization: `L402 ${credential}` })));
    const ok = results.filter((r) => r.status === 200).length;
    expect(ok).toBe(PRICE.credits);
    for (const r of results.filter((x) => x.status !== 200)) expectRefused(r, 402, "l402_exhausted");
    expect(received() - before).toBe(PRICE.credits);
  });

  it("POST /verify {type: l402} turns a paid credential into an access token spending the same credits", async () => {
    const session = await openSession(gw, caller("verify"));
    const { credential } = await paidCredential(gw, session);
    expect((await call(gw, { ...session, authorization: `L402 ${credential}` })).status).toBe(200);
    const [mac, preimage] = credential.split(":");
    const v = await fetch(`${gw.url}/.well-known/tollbooth/verify`, {
      method: "POST",
      headers: { "content-type": "application/json", ...session },
      body: JSON.stringify({ type: "l402", macaroon: mac, preimage }),
    });
    expect(v.status).toBe(200);
    const { token, credits } = (await v.json()) as { token: string; credits: number };
    expect(credits).toBe(PRICE.credits - 1);
    for (let i = 0; i < PRICE.credits - 1; i++) expect((await call(gw, { ...session, "tollbooth-token": token })).status).toBe(200);
    expect((await call(gw, { ...session, "tollbooth-token": token })).body.error.data.reason).toBe("token_exhausted");
    expectRefused(await call(gw, { ...session, authorization: `L402 ${credential}` }), 402, "l402_exhausted");
  });
});

describe("refused credentials get 401 with fresh challenges and never reach the origin", () => {
  const who = caller("refusals");
  let session: Record<string, string>;
  let credential: string;
  let offer: ReturnType<typeof l402Of>;
  beforeAll(async () => {
    session = await openSession(gw, who);
    ({ credential, offer } = await paidCredential(gw, session));
  });

  const refused = async (headers: Record<string, string>, reason: string) => {
    const before = received();
    expectRefused(await call(gw, { ...session, ...headers }), 401, reason);
    expect(received()).toBe(before);
  };

  it("a wrong preimage", async () => {
    await refused({ authorization: `L402 ${offer.macaroon}:${randomBytes(32).toString("hex")}` }, "l402_wrong_preimage");
  });

  it("an unpaid macaroon with a made-up preimage is the same refusal (the preimage is checked offline)", async () => {
    const fresh = l402Of(await call(gw, session)).macaroon;
    await refused({ authorization: `L402 ${fresh}:${"00".repeat(32)}` }, "l402_wrong_preimage");
  });

  it("a tampered caveat (credits raised) breaks the HMAC chain", async () => {
    const bytes = Buffer.from(offer.macaroon, "base64");
    const at = bytes.indexOf(`tollbooth_credits=${PRICE.credits}`);
    expect(at).toBeGreaterThan(0);
    bytes.write("9", at + "tollbooth_credits=".length);
    await refused({ authorization: `L402 ${bytes.toString("base64")}:${credential.split(":")[1]}` }, "l402_bad_signature");
  });

  it("an expired macaroon (attenuated to a past valid_until by its holder)", async () => {
    const past = attenuate(offer.macaroon, `tollbooth_valid_until=${Math.floor(Date.now() / 1000) - 10}`);
    await refused({ authorization: `L402 ${past}:${credential.split(":")[1]}` }, "l402_expired");
  });

  it("an unknown caveat", async () => {
    const odd = attenuate(offer.macaroon, "tollbooth_capabilities=read");
    await refused({ authorization: `L402 ${odd}:${credential.split(":")[1]}` }, "l402_unknown_caveat");
  });

  it("a paid macaroon of another service (same secret, another gateway)", async () => {
    const elsewhere = await openSession(other, who);
    const paidThere = await paidCredential(other, elsewhere);
    await refused({ authorization: `L402 ${paidThere.credential}` }, "l402_wrong_service");
  });

  it("a paid credential replayed by another caller", async () => {
    const thief = await openSession(gw, caller("thief"));
    const before = received();
    expectRefused(await call(gw, { ...thief, authorization: `L402 ${credential}` }), 401, "l402_wrong_caller");
    expectRefused(await call(gw, { ...thief, "tollbooth-l402": credential }), 401, "l402_wrong_caller");
    expect(received()).toBe(before);
  });

  it("a malformed credential", async () => {
    await refused({ authorization: "L402 not-a-macaroon" }, "l402_malformed");
    await refused({ "tollbooth-l402": `${offer.macaroon}:${"zz".repeat(32)}` }, "l402_malformed");
  });

  it("…while the payer's own credential still works afterwards", async () => {
    const r = await call(gw, { ...session, authorization: `L402 ${credential}` });
    expect(r.status).toBe(200);
    expect(r.headers.get("tollbooth-credits")).toBe(String(PRICE.credits - 1));
  });
});

/** SHA-256 of hex bytes, hex (independent of tollbooth's code). */

describe("agents: the SDK client through withTollbooth, and the stdio bridge", () => {
  const echo = (i: number) => ({ name: "echo", arguments: { message: `call-${i}` } });

  it("an agent preferring L402 pays once per bundle of credits, never solves, and every call reaches the origin once", async () => {
    const paid: PayEvent[] = [];
    const solved: SolveEvent[] = [];
    const paidBefore = ln.paidSats();
    const before = origin.counts()["tools/call:echo"] ?? 0;
    const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex });
    const c = await connect(`${gw.url}/mcp`, {
      apiKey: `sdk-l402-${randomBytes(4).toString("hex")}`,
      headers: { "cf-connecting-ip": network() },
      fetch: withTollbooth(undefined, {
        pay: ["l402", "pow"],
        lightning: { wallet, maxSatsPerRequest: 10, maxSatsPerHour: 100 },
        onPay: (e) => paid.push(e),
        onSolve: (e) => solved.push(e),
      }),
    });
    try {
      for (let i = 1; i <= 11; i++) expect(firstText(await c.client.callTool(echo(i)))).toBe(`Echo: call-${i}`);
    } finally {
      await c.close(true);
    }
    // 1 free call, then 10 on two paid bundles of 5 credits.
    expect(paid.map((e) => e.sats)).toEqual([PRICE.sats, PRICE.sats]);
    expect(solved).toEqual([]);
    expect(ln.paidSats() - paidBefore).toBe(2 * PRICE.sats);
    expect((origin.counts()["tools/call:echo"] ?? 0) - before).toBe(11);
  });

  it("an agent that allows only proof of work still gets through by work, and its wallet is never asked", async () => {
    let asked = 0;
    const solved: SolveEvent[] = [];
    // A wallet is at hand, but the agent allows only work.
    const wallet = {
      payInvoice: async (_: string): Promise<{ preimage: string }> => {
        asked++;
        throw new Error("not allowed");
      },
    };
    const c = await connect(`${gw.url}/mcp`, {
      apiKey: `sdk-pow-${randomBytes(4).toString("hex")}`,
      headers: { "cf-connecting-ip": network() },
      fetch: withTollbooth(undefined, {
        pay: ["pow"],
        lightning: { wallet, maxSatsPerRequest: 100, maxSatsPerHour: 100 },
        onSolve: (e) => solved.push(e),
      }),
    });
    try {
      for (let i = 1; i <= 6; i++) expect(firstText(await c.client.callTool(echo(i)))).toBe(`Echo: call-${i}`);
    } finally {
      await c.close(true);
    }
    expect(solved.length).toBe(2);
    expect(asked).toBe(0);
  });

  it("an agent over its spending limit is refused before paying, and the origin is not reached", async () => {
    let asked = 0;
    const wallet = {
      payInvoice: async (_: string) => {
        asked++;
        return { preimage: "00".repeat(32) };
      },
    };
    const c = await connect(`${gw.url}/mcp`, {
      apiKey: `sdk-cap-${randomBytes(4).toString("hex")}`,
      headers: { "cf-connecting-ip": network() },
      fetch: withTollbooth(undefined, { pay: ["l402"], lightning: { wallet, maxSatsPerRequest: PRICE.sats - 1, maxSatsPerHour: 100 } }),
    });
    try {
      expect(firstText(await c.client.callTool(echo(1)))).toBe("Echo: call-1");
      const before = received();
      await expect(c.client.callTool(echo(2))).rejects.toThrow(/invoice asks 10 sats, more than maxSatsPerRequest/);
      expect(received()).toBe(before);
    } finally {
      await c.close(true);
    }
    expect(asked).toBe(0);
  });

  it("the stdio bridge with --pay l402 pays from an LND node and its client never sees a challenge", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tollbooth-l402-"));
    const macaroonFile = join(dir, "payer.macaroon");
    writeFileSync(macaroonFile, Buffer.from(ln.macaroonHex, "hex"));
    const paidBefore = ln.paidSats();
    const cli = fileURLToPath(new URL("../../packages/tollbooth-bridge/src/cli.ts", import.meta.url));
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        cli,
        `${gw.url}/mcp`,
        "--header",
        `x-api-key: bridge-l402-${randomBytes(4).toString("hex")}`,
        "--header",
        `cf-connecting-ip: ${network()}`,
        "--pay",
        "l402",
        "--lnd-url",
        ln.url,
        "--lnd-macaroon-file",
        macaroonFile,
        "--max-sats-per-hour",
        "50",
      ],
      stderr: "pipe",
    });
    const client = new Client({ name: "l402-bridge-e2e", version: "1.0.0" });
    await client.connect(transport);
    try {
      for (let i = 1; i <= 4; i++) expect(firstText(await client.callTool(echo(i)))).toBe(`Echo: call-${i}`);
    } finally {
      await client.close();
    }
    expect(ln.paidSats() - paidBefore).toBe(PRICE.sats);
  });
});

// Last: after a backend failure the gateway pauses L402 for a few seconds (BACKEND_PAUSE_MS).
describe("when the Lightning backend is down", () => {
  it("the 402 comes at once with proof of work only, and lists L402 as unavailable", async () => {
    const session = await openSession(gw, caller("down"));
    ln.setDown(true);
    try {
      const r = await overBudget(gw, session);
      expect(r.headers.get("www-authenticate")).toMatch(/^PowChallenge [\s\S]*signature="[^"]+"$/);
      expect(r.headers.get("www-authenticate")).not.toContain("L402");
      expect(r.body.error.data.challenges).toHaveLength(2);
      expect(r.body.error.data.challenges[1]).toMatchObject({ type: "l402", unavailable: true, reason: "backend_unavailable" });
    } finally {
      ln.setDown(false);
    }
  });
});
