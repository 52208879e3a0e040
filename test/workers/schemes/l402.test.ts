/**
 * L402 through the gateway in workerd (workers/schemes/l402/, docs/wire-contract.md §10),
 * with a fake LND answering the Worker's `fetch` (test/workers/payments.ts): the 402 offers
 * an invoice and a macaroon bound to its payment hash; the macaroon with the invoice's
 * preimage gets through as `Authorization: L402`, `Authorization: LSAT` or `Tollbooth-L402`,
 * and the origin never receives the credential (an OAuth `Authorization` beside
 * `Tollbooth-L402` is the origin's and passes). The invoice reserve is kept for trusted callers
 * (a verified API key, a payer whose payment completed), never for a sender of a payment that
 * only verified. Real invoices and the Lightning stand-in are
 * test/unit/workers/schemes/contract.test.ts's and test/e2e/l402-lightning.test.ts's.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { base64Json, FACILITATOR, FACILITATOR_URL, fakeFacilitator, fakeLnd, LND_MACAROON_HEX, LND_URL, x402Payment } from "../payments.ts";
import { errorBody, type Forwarded, fetchChallenge, freshIp, gateway, observeOrigin, post, solve, toolCall } from "../support.ts";

const PRICE = { sats: 10, credits: 5 };
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  challenge: { difficulty: 4 },
  l402: PRICE,
  lightning: { backend: "lnd", url: LND_URL, invoicesPerSecond: 1000 },
};
const send = gateway(POLICY, { TOLLBOOTH_LIGHTNING_SECRET: LND_MACAROON_HEX });

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
let lnd: ReturnType<typeof fakeLnd>;

beforeEach(() => {
  ip = freshIp();
  lnd = fakeLnd();
  origin = observeOrigin(undefined, { [LND_URL]: lnd.service });
});

/** Spend the free unit, take the 402's L402 offer, pay its invoice: `<macaroon>:<preimage hex>`. */
async function paidCredential(): Promise<string> {
  expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
  const res = await send(post(toolCall(2), { ip }));
  expect(res.status).toBe(402);
  expect(res.headers.get("www-authenticate")).toContain("L402 ");
  const offer = (await errorBody(res)).error.data!.challenges.find((c: { type: string }) => c.type === "l402") as {
    macaroon: string;
    invoice: string;
    sats: number;
    credits: number;
  };
  expect(offer).toMatchObject({ sats: PRICE.sats, credits: PRICE.credits });
  return `${offer.macaroon}:${lnd.preimageOf(offer.invoice)}`;
}

/** What the origin received carries no L402 credential, in any header. */
function expectNoCredential(f: Forwarded, credential: string): void {
  expect(f.headers["tollbooth-l402"]).toBeUndefined();
  expect(f.headers.authorization ?? "").not.toMatch(/^(L402|LSAT) /i);
  const [macaroon, preimage] = credential.split(":") as [string, string];
  expect(JSON.stringify(f.headers) + f.body).not.toContain(preimage);
  expect(JSON.stringify(f.headers) + f.body).not.toContain(macaroon);
}

describe("a paid L402 credential", () => {
  for (const scheme of ["L402", "LSAT"]) {
    it(`Authorization: ${scheme} <macaroon>:<preimage>: admitted, spends its credits; the origin never gets the Authorization`, async () => {
      const credential = await paidCredential();
      const before = origin.requests.length;
      for (let left = PRICE.credits - 1; left >= 0; left--) {
        const res = await send(post(toolCall(10 + left), { ip, headers: { authorization: `${scheme} ${credential}` } }));
        expect(res.status).toBe(200);
        expect(res.headers.get("tollbooth-credits")).toBe(String(left));
      }
      const seen = origin.requests.slice(before);
      expect(seen).toHaveLength(PRICE.credits);
      for (const f of seen) {
        expect(f.headers.authorization).toBeUndefined();
        expectNoCredential(f, credential);
      }
    });
  }

  it("Tollbooth-L402 beside an OAuth Authorization: the origin gets the OAuth header, never the credential", async () => {
    const credential = await paidCredential();
    const before = origin.requests.length;
    const res = await send(post(toolCall(3), { ip, headers: { authorization: "Bearer origin-token", "tollbooth-l402": credential } }));
    expect(res.status).toBe(200);
    const seen = origin.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe("Bearer origin-token");
    expectNoCredential(seen[0]!, credential);
  });

  it("a wrong preimage: 401 l402_wrong_preimage with a fresh challenge; the origin gets nothing", async () => {
    const credential = await paidCredential();
    const before = origin.requests.length;
    const wrong = `${credential.split(":")[0]}:${"00".repeat(32)}`;
    const res = await send(post(toolCall(3), { ip, headers: { authorization: `L402 ${wrong}` } }));
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain("L402 ");
    expect((await errorBody(res)).error.data!.reason).toBe("l402_wrong_preimage");
    expect(origin.requests).toHaveLength(before);
  });
});

describe("who draws on the invoice reserve (invoicesPerSecond 0.2: a burst of 2, 1 of it reserved)", () => {
  const PRO_KEY = "tb_pro-key-for-the-reserve-test-000000000000";
  let seq = 0;
  /** A gateway of its own (its own per-isolate budgets), L402 and x402, one `pro` API key. */
  async function fresh() {
    const sha256 = [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(PRO_KEY)))]
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    const policy = {
      ...POLICY,
      lightning: { backend: "lnd", url: LND_URL, invoicesPerSecond: 0.2, service: `reserve-${++seq}-${Date.now() % 1e6}` },
      x402: { mode: "credits", amount: "10000", credits: 2 },
      facilitator: FACILITATOR,
      plans: { pro: { bucket: { capacity: 1, refillPerSecond: 0.0001 } } },
      identity: { apiKeys: [{ sha256, name: "pro", plan: "pro" }] },
    };
    return gateway(policy, { TOLLBOOTH_LIGHTNING_SECRET: LND_MACAROON_HEX });
  }
  /** The 402's L402 entry (an invoice, or why not) and its `error.data.reason`. */
  async function l402Of(res: Response): Promise<{ invoice?: string; unavailable?: boolean; reason?: string; refused: string }> {
    expect(res.status).toBe(402);
    const data = (await errorBody(res)).error.data!;
    return { ...data.challenges.find((c: { type: string }) => c.type === "l402"), refused: data.reason };
  }
  /** Over budget from a fresh network (its free unit spent first): the 402's L402 entry. */
  async function overBudget(
    send: (r: Request) => Promise<Response>,
    headers: Record<string, string> = {},
    extra: Record<string, string> = {},
  ) {
    const from = freshIp();
    expect((await send(post(toolCall(1), { ip: from, headers }))).status).toBe(200);
    return l402Of(await send(post(toolCall(2), { ip: from, headers: { ...headers, ...extra } })));
  }

  it("unverified networks take the one unit above the reserve, then busy; the pro API key still gets an invoice", async () => {
    const send = await fresh();
    const facilitator = fakeFacilitator();
    origin = observeOrigin(undefined, { [LND_URL]: lnd.service, [FACILITATOR_URL]: facilitator.service });
    expect((await overBudget(send)).invoice).toMatch(/^lnbcrt/);
    for (let i = 0; i < 5; i++) expect(await overBudget(send)).toMatchObject({ unavailable: true, reason: "busy" });
    expect((await overBudget(send, { "x-api-key": PRO_KEY })).invoice).toMatch(/^lnbcrt/);
    expect(lnd.created()).toBe(2);
  });

  it("an x402 payment that only verified (signed from an empty wallet, refused at the facilitator's /verify) does not make its sender trusted", async () => {
    const send = await fresh();
    const facilitator = fakeFacilitator();
    origin = observeOrigin(undefined, { [LND_URL]: lnd.service, [FACILITATOR_URL]: facilitator.service });
    expect((await overBudget(send)).invoice).toMatch(/^lnbcrt/);
    facilitator.setVerdict({ isValid: false, invalidReason: "invalid_exact_evm_insufficient_funds" });
    const from = freshIp();
    const refused = await send(post(toolCall(3), { ip: from, headers: { "payment-signature": base64Json(await x402Payment("10000")) } }));
    expect(await l402Of(refused)).toMatchObject({ refused: "x402_invalid", unavailable: true, reason: "busy" });
    // A forged one neither.
    const p = await x402Payment("10000");
    const forged = { ...p, payload: { ...p.payload, signature: (await x402Payment("10000")).payload.signature } };
    expect(await l402Of(await send(post(toolCall(4), { ip: from, headers: { "payment-signature": base64Json(forged) } })))).toMatchObject({
      refused: "x402_invalid",
      unavailable: true,
      reason: "busy",
    });
    expect(lnd.created()).toBe(1);
  });

  it("an access token bought with proof of work (cheap to make) does not make its holder trusted when it runs out", async () => {
    const send = await fresh();
    const facilitator = fakeFacilitator();
    origin = observeOrigin(undefined, { [LND_URL]: lnd.service, [FACILITATOR_URL]: facilitator.service });
    expect((await overBudget(send)).invoice).toMatch(/^lnbcrt/);
    const from = freshIp();
    const { verifyBody } = await solve(await fetchChallenge(send, { "cf-connecting-ip": from }));
    const bought = await send(post(verifyBody, { ip: from, path: "/.well-known/tollbooth/verify" }));
    expect(bought.status).toBe(200);
    const { token, credits } = (await bought.json()) as { token: string; credits: number };
    for (let i = 0; i < credits; i++)
      expect((await send(post(toolCall(10 + i), { ip: from, headers: { "tollbooth-token": token } }))).status).toBe(200);
    const out = await l402Of(await send(post(toolCall(99), { ip: from, headers: { "tollbooth-token": token } })));
    expect(out).toMatchObject({ refused: "token_exhausted", unavailable: true, reason: "busy" });
    expect(lnd.created()).toBe(1);
  });

  it("a payer whose access token ran out (bought with a settled x402 payment) is trusted: it gets an invoice from the reserve", async () => {
    const send = await fresh();
    const facilitator = fakeFacilitator();
    origin = observeOrigin(undefined, { [LND_URL]: lnd.service, [FACILITATOR_URL]: facilitator.service });
    expect((await overBudget(send)).invoice).toMatch(/^lnbcrt/);
    expect(await overBudget(send)).toMatchObject({ unavailable: true, reason: "busy" });
    const from = freshIp();
    const bought = await send(
      post({ type: "x402", payment: await x402Payment("10000") }, { ip: from, path: "/.well-known/tollbooth/verify" }),
    );
    expect(bought.status).toBe(200);
    const { token } = (await bought.json()) as { token: string };
    for (let i = 0; i < 2; i++)
      expect((await send(post(toolCall(10 + i), { ip: from, headers: { "tollbooth-token": token } }))).status).toBe(200);
    const out = await l402Of(await send(post(toolCall(12), { ip: from, headers: { "tollbooth-token": token } })));
    expect(out.refused).toBe("token_exhausted");
    expect(out.invoice).toMatch(/^lnbcrt/);
    expect(lnd.created()).toBe(2);
  });
});
