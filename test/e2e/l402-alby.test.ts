/**
 * L402 with the client people use: Alby's `@getalby/lightning-tools` (`fetch402`,
 * `fetchWithL402`), unchanged, through the real gateway (`wrangler dev`) in front of
 * server-everything, paying invoices of the Lightning stand-in (test/helpers/lightning-standin.ts)
 * with a WebLN-style wallet over it (`standinWebln`: `payInvoice({ invoice }) → { preimage }`).
 *
 * How Alby reads the 402 (its dist/esm/402.js, v10.0.0): `headers.get("www-authenticate")`,
 * i.e. every field line joined with ", ". `fetch402` pays only when that value starts with
 * `L402` or `LSAT`; `fetchWithL402` takes any value and collects every `name="value"` pair
 * in it (`parseL402`), so the L402 pairs are found wherever the challenge is. Hence:
 *  - with `"offerOrder": ["l402"]` (L402's field line first, then PowChallenge) both pay, and
 *    the `Authorization: L402 <token>:<preimage>` they send is admitted; the credential they
 *    hand back spends the credits it bought without paying again; the origin never receives
 *    it;
 *  - with the default order (PowChallenge first) `fetch402` returns the 402 unpaid (why the
 *    option exists) and `fetchWithL402` still pays;
 *  - tollbooth's own resolver (`withTollbooth`) picks by its own `pay` preference whatever
 *    the gateway's order: with L402 first it still solves when it allows only work.
 */
import { randomBytes } from "node:crypto";
import { fetch402, fetchWithL402 } from "@getalby/lightning-tools/402";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PayEvent, type SolveEvent, withTollbooth } from "../../packages/tollbooth-client/src/index.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type LightningStandin, standinWebln, startLightningStandin } from "../helpers/lightning-standin.ts";
import { MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const PRICE = { sats: 10, credits: 5 };
const policy = (lnUrl: string, extra: Record<string, unknown> = {}) => ({
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  challenge: { difficulty: 8, credits: 4 },
  l402: PRICE,
  lightning: { backend: "lnd", url: lnUrl, timeoutMs: 2_000 },
  ...extra,
});

let origin: Origin;
let ln: LightningStandin;
/** L402 leads: `offerOrder: ["l402"]`. */
let lead: Gateway;
/** The default order: proof of work first. */
let plain: Gateway;

beforeAll(async () => {
  [origin, ln] = await Promise.all([startOrigin(), startLightningStandin()]);
  const vars = { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex };
  [lead, plain] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: policy(ln.url, { offerOrder: ["l402"] }), vars }),
    startGateway({ originUrl: origin.url, policy: policy(ln.url), vars }),
  ]);
});

afterAll(async () => {
  await Promise.all([lead?.close(), plain?.close()]);
  await Promise.all([origin?.close(), ln?.close()]);
});

let rpcId = 0;
const toolCall = (message: string) =>
  JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message } } });

/**
 * A fresh caller with a live MCP session on `g` (initialize + notifications/initialized, both free): its headers.
 * Each is a network of its own (`CF-Connecting-IP`, which `wrangler dev` passes through): the
 * unverified callers of one network get at most 2 fresh invoices per 60 s (docs/costs.md).
 */
async function session(g: Gateway): Promise<Record<string, string>> {
  const [a, b, c] = randomBytes(3);
  const who = { "cf-connecting-ip": `10.${a}.${b}.${c}` };
  return { ...MCP_HEADERS, ...who, ...(await openRawSession(`${g.url}/mcp`, who, "alby-test")) };
}

/** A caller whose free unit is spent: the next priced call gets a 402. */
async function spentCaller(g: Gateway): Promise<Record<string, string>> {
  const headers = await session(g);
  const free = await fetch(`${g.url}/mcp`, { method: "POST", headers, body: toolCall("free") });
  expect(await free.text()).toContain("Echo: free");
  expect(free.status).toBe(200);
  return headers;
}

/** The echo calls the origin has received with `message`, and their headers. */
const receivedWith = (message: string) => origin.requests().filter((r) => JSON.stringify(r.messages).includes(`"message":"${message}"`));

describe('Alby\'s fetch402 and fetchWithL402 against a gateway where L402 leads (offerOrder ["l402"])', () => {
  it("the 402's WWW-Authenticate starts with the whole L402 challenge: a reader of the first challenge finds token, macaroon and invoice there", async () => {
    const headers = await spentCaller(lead);
    const res = await fetch(`${lead.url}/mcp`, { method: "POST", headers, body: toolCall("peek") });
    const body = (await res.json()) as { error: { data: { challenges: Array<{ type: string }> } } };
    expect(res.status).toBe(402);
    const www = res.headers.get("www-authenticate") ?? "";
    const first = www.slice(0, www.indexOf(", PowChallenge "));
    expect(first).toMatch(/^L402 version="0", token="[A-Za-z0-9+/=]+", macaroon="[A-Za-z0-9+/=]+", invoice="lnbcrt[0-9a-z]+"$/);
    expect(body.error.data.challenges.map((c) => c.type)).toEqual(["l402", "pow"]);
    expect(receivedWith("peek")).toHaveLength(0);
  });

  it("fetch402 pays the invoice and gets the tool result; the origin gets the call once, without the credential", async () => {
    const headers = await spentCaller(lead);
    const wallet = standinWebln(ln);
    const paidBefore = ln.paidSats();
    const res = await fetch402(
      `${lead.url}/mcp`,
      { method: "POST", headers, body: toolCall("alby-402") },
      { wallet, maxAmount: PRICE.sats },
    );
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("Echo: alby-402");
    expect(res.payment).toMatchObject({ paid: true, amountSat: PRICE.sats });
    expect(res.payment!.credentials.header).toBe("Authorization");
    expect(res.payment!.credentials.value).toMatch(/^L402 [A-Za-z0-9+/=]+:[0-9a-f]{64}$/);
    expect(res.headers.get("tollbooth-credits")).toBe(String(PRICE.credits - 1));
    expect(wallet.paid).toHaveLength(1);
    expect(ln.paidSats() - paidBefore).toBe(PRICE.sats);
    const seen = receivedWith("alby-402");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBeUndefined();
    expect(JSON.stringify(seen[0]!.headers)).not.toContain(res.payment!.preimage!);
  });

  it("the credential fetch402 hands back spends the credits it bought, never paying again; spent, the 402 comes back unpaid", async () => {
    const headers = await spentCaller(lead);
    const wallet = standinWebln(ln);
    const first = await fetch402(`${lead.url}/mcp`, { method: "POST", headers, body: toolCall("bundle-0") }, { wallet });
    expect(first.status).toBe(200);
    await first.text();
    const credentials = first.payment!.credentials;
    for (let left = PRICE.credits - 2; left >= 0; left--) {
      const res = await fetch402(`${lead.url}/mcp`, { method: "POST", headers, body: toolCall(`bundle-${left}`) }, { wallet, credentials });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain(`Echo: bundle-${left}`);
      expect(res.headers.get("tollbooth-credits")).toBe(String(left));
    }
    const spent = await fetch402(`${lead.url}/mcp`, { method: "POST", headers, body: toolCall("bundle-over") }, { wallet, credentials });
    expect(spent.status).toBe(402);
    expect(((await spent.json()) as { error: { data: { reason: string } } }).error.data.reason).toBe("l402_exhausted");
    expect(wallet.paid).toHaveLength(1);
    expect(receivedWith("bundle-over")).toHaveLength(0);
  });

  it("fetchWithL402 pays too", async () => {
    const headers = await spentCaller(lead);
    const wallet = standinWebln(ln);
    const res = await fetchWithL402(`${lead.url}/mcp`, { method: "POST", headers, body: toolCall("alby-with") }, { wallet });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("Echo: alby-with");
    expect(wallet.paid).toHaveLength(1);
    expect(receivedWith("alby-with")).toHaveLength(1);
  });

  it("tollbooth's resolver still picks by its own preference: allowing only work it solves, allowing L402 first it pays", async () => {
    const solved: SolveEvent[] = [];
    const paid: PayEvent[] = [];
    let asked = 0;
    const refusing = { payInvoice: async (): Promise<{ preimage: string }> => (asked++, Promise.reject(new Error("not allowed"))) };
    const worker = withTollbooth(fetch, {
      pay: ["pow"],
      lightning: { wallet: refusing, maxSatsPerRequest: 100, maxSatsPerHour: 100 },
      onSolve: (e) => solved.push(e),
    });
    const workHeaders = await spentCaller(lead);
    const worked = await worker(`${lead.url}/mcp`, { method: "POST", headers: workHeaders, body: toolCall("by-work") });
    expect(worked.status).toBe(200);
    expect(await worked.text()).toContain("Echo: by-work");
    expect(solved).toHaveLength(1);
    expect(asked).toBe(0);

    const webln = standinWebln(ln);
    const wallet = { payInvoice: async (invoice: string) => webln.sendPayment(invoice) };
    const payer = withTollbooth(fetch, {
      pay: ["l402", "pow"],
      lightning: { wallet, maxSatsPerRequest: PRICE.sats, maxSatsPerHour: 100 },
      onPay: (e) => paid.push(e),
    });
    const payHeaders = await spentCaller(lead);
    const bought = await payer(`${lead.url}/mcp`, { method: "POST", headers: payHeaders, body: toolCall("by-pay") });
    expect(bought.status).toBe(200);
    expect(await bought.text()).toContain("Echo: by-pay");
    expect(paid.map((e) => e.sats)).toEqual([PRICE.sats]);
  });
});

describe("Alby against the default order (PowChallenge first): why offerOrder exists", () => {
  it("fetch402 returns the 402 unpaid and its wallet is never asked; nothing reaches the origin", async () => {
    const headers = await spentCaller(plain);
    const wallet = standinWebln(ln);
    const res = await fetch402(`${plain.url}/mcp`, { method: "POST", headers, body: toolCall("alby-unpaid") }, { wallet });
    expect(res.status).toBe(402);
    expect(res.headers.get("www-authenticate")).toMatch(/^PowChallenge realm="tollbooth", .*, L402 version="0", /);
    expect(res.payment).toBeUndefined();
    expect(wallet.paid).toHaveLength(0);
    expect(receivedWith("alby-unpaid")).toHaveLength(0);
  });

  it("fetchWithL402 finds the L402 challenge after PowChallenge and pays", async () => {
    const headers = await spentCaller(plain);
    const wallet = standinWebln(ln);
    const res = await fetchWithL402(`${plain.url}/mcp`, { method: "POST", headers, body: toolCall("alby-later") }, { wallet });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("Echo: alby-later");
    expect(wallet.paid).toHaveLength(1);
    expect(receivedWith("alby-later")).toHaveLength(1);
  });
});
