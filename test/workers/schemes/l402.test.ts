/**
 * L402 through the gateway in workerd (workers/schemes/l402/, docs/wire-contract.md §10),
 * with a fake LND answering the Worker's `fetch` (test/workers/payments.ts): the 402 offers
 * an invoice and a macaroon bound to its payment hash; the macaroon with the invoice's
 * preimage gets through as `Authorization: L402`, `Authorization: LSAT` or `Tollbooth-L402`,
 * and the origin never receives the credential (an OAuth `Authorization` beside
 * `Tollbooth-L402` is the origin's and passes). Real invoices and the Lightning stand-in are
 * test/unit/workers/schemes/contract.test.ts's and test/e2e/l402-lightning.test.ts's.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { fakeLnd, LND_MACAROON_HEX, LND_URL } from "../payments.ts";
import { errorBody, type Forwarded, freshIp, gateway, observeOrigin, post, toolCall } from "../support.ts";

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
