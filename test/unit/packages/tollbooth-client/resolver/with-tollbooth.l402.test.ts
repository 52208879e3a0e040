/**
 * `withTollbooth` choosing among challenges (docs/wire-contract.md §10–11) against a scripted
 * fake gateway that answers as the wire contract says: a 402 carries a `PowChallenge` and an
 * `L402` challenge (two `WWW-Authenticate` field lines, built with `formatAuthParams`) whose
 * invoice is a real signed regtest BOLT11; a paid credential (`Authorization: L402 m:p` or
 * `Tollbooth-L402: m:p`) spends credits and reports `Tollbooth-Credits`; an expired one gets
 * 401 `l402_expired`, a spent one 402 `l402_exhausted`, both with fresh challenges.
 */
import { createHash, randomBytes } from "node:crypto";
import bolt11 from "bolt11";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TollboothError } from "../../../../../packages/tollbooth-client/src/errors.ts";
import {
  type FetchLike,
  type PayEvent,
  type WithTollboothOptions,
  withTollbooth,
} from "../../../../../packages/tollbooth-client/src/index.ts";
import type { LightningWallet } from "../../../../../packages/tollbooth-client/src/payers/lightning-wallet.ts";
import { formatAuthParams } from "../../../../../shared/wire/auth-params.ts";
import {
  AUTHORIZATION_HEADER,
  CREDITS_HEADER,
  L402_HEADER,
  SOLUTION_HEADER,
  TOKEN_HEADER,
  WWW_AUTHENTICATE_HEADER,
} from "../../../../../shared/wire/headers.ts";

const REGTEST = { bech32: "bcrt", pubKeyHash: 111, scriptHash: 196, validWitnessVersions: [0, 1] };
const NODE_KEY = "e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734";
const sha256hex = (hex: string) => createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex");

/** A signed regtest invoice; `satoshis` null → amountless. */
function invoice(satoshis: number | null, paymentHash: string): string {
  const encoded = bolt11.encode({
    network: REGTEST,
    ...(satoshis === null ? {} : { satoshis }),
    timestamp: Math.floor(Date.now() / 1000),
    tags: [
      { tagName: "payment_hash", data: paymentHash },
      { tagName: "description", data: "x" },
      { tagName: "expire_time", data: 600 },
      { tagName: "payment_secret", data: randomBytes(32).toString("hex") },
    ],
  });
  return bolt11.sign(encoded, NODE_KEY).paymentRequest!;
}

interface GatewayOptions {
  /** Requests admitted free before the 402s start (default 0). */
  free?: number;
  /** Price of the L402 invoice, sats (null: amountless). */
  sats?: number | null;
  /** Credits a paid macaroon carries. */
  l402Credits?: number;
  /** Credits an access token carries. */
  tokenCredits?: number;
  difficulty?: number;
  /** Offer no L402 challenge. */
  noL402?: boolean;
}

interface Sent {
  status: number;
  headers: Headers;
}

/** The scripted gateway and what it saw. */
function fakeGateway(opts: GatewayOptions = {}) {
  let free = opts.free ?? 0;
  const difficulty = opts.difficulty ?? 6;
  /** Invoices issued: payment hash → preimage. */
  const preimages = new Map<string, string>();
  /** Macaroon → payment hash (the macaroon is opaque here: "mac-<hash>"). */
  const macaroons = new Map<string, string>();
  /** Opened L402 credentials: macaroon → credits left. */
  const l402 = new Map<string, number>();
  const expired = new Set<string>();
  const tokens = new Map<string, number>();
  const log: Sent[] = [];
  let expireAll = false;

  const challengeHeaders = () => {
    const h = new Headers({ "content-type": "application/json" });
    h.append(
      WWW_AUTHENTICATE_HEADER,
      formatAuthParams("PowChallenge", {
        realm: "tollbooth",
        id: randomBytes(16).toString("base64url"),
        salt: randomBytes(16).toString("hex"),
        difficulty,
        algorithm: "sha256",
        expires: 1_900_000_000,
        credits: opts.tokenCredits ?? 5,
        kid: "k1",
        signature: "sig",
      }),
    );
    if (!opts.noL402) {
      const preimage = randomBytes(32).toString("hex");
      const hash = sha256hex(preimage);
      preimages.set(hash, preimage);
      const mac = Buffer.from(`mac-${hash}`).toString("base64");
      macaroons.set(mac, hash);
      h.append(
        WWW_AUTHENTICATE_HEADER,
        formatAuthParams("L402", {
          version: "0",
          token: mac,
          macaroon: mac,
          invoice: invoice(opts.sats === undefined ? 10 : opts.sats, hash),
        }),
      );
    }
    return h;
  };
  const refuse = (status: 401 | 402, reason: string) =>
    new Response(JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: status, message: `refused (${reason})`, data: { reason } } }), {
      status,
      headers: challengeHeaders(),
    });
  const ok = (extra: Record<string, string> = {}) =>
    new Response(JSON.stringify({ jsonrpc: "2.0", id: 1, result: {} }), {
      status: 200,
      headers: { "content-type": "application/json", ...extra },
    });

  const answer = (h: Headers): Response => {
    const solution = h.get(SOLUTION_HEADER);
    if (solution) {
      const salt = /salt="([0-9a-f]+)"/.exec(solution)?.[1];
      const nonce = /nonce="([0-9]+)"/.exec(solution)?.[1];
      const digest = createHash("sha256").update(`${salt}${nonce}`).digest();
      const bits = digest.readUInt32BE(0) >>> (32 - difficulty);
      if (!salt || !nonce || bits !== 0) return refuse(402, "solution_insufficient_work");
      const credits = (opts.tokenCredits ?? 5) - 1;
      const token = `tb1.k1.${Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 300 })).toString("base64url")}.sig${tokens.size}`;
      tokens.set(token, credits);
      return ok({ [TOKEN_HEADER]: token, [CREDITS_HEADER]: String(credits) });
    }
    const auth = h.get(AUTHORIZATION_HEADER);
    const l402Value = h.get(L402_HEADER) ?? (auth && /^(L402|LSAT) /i.test(auth) ? auth.slice(5) : null);
    if (l402Value) {
      const [mac, preimage] = l402Value.split(":");
      const hash = macaroons.get(mac ?? "");
      if (!hash || !preimage || !/^[0-9a-f]{64}$/.test(preimage)) return refuse(401, "l402_malformed");
      if (sha256hex(preimage) !== hash) return refuse(401, "l402_wrong_preimage");
      if (expireAll || expired.has(mac!)) return refuse(401, "l402_expired");
      if (!l402.has(mac!)) l402.set(mac!, opts.l402Credits ?? 3);
      const left = l402.get(mac!)!;
      if (left <= 0) return refuse(402, "l402_exhausted");
      l402.set(mac!, left - 1);
      return ok({ [CREDITS_HEADER]: String(left - 1) });
    }
    const token = h.get(TOKEN_HEADER);
    if (token) {
      const left = tokens.get(token);
      if (left === undefined) return refuse(402, "token_unknown");
      if (left <= 0) return refuse(402, "token_exhausted");
      tokens.set(token, left - 1);
      return ok({ [CREDITS_HEADER]: String(left - 1) });
    }
    if (free > 0) {
      free--;
      return ok();
    }
    return refuse(402, "over_budget");
  };

  const fetch: FetchLike = async (_url, init) => {
    const headers = new Headers(init?.headers);
    const res = answer(headers);
    log.push({ status: res.status, headers });
    return res;
  };
  return {
    fetch,
    log,
    /** The gateway's clock passes every paid macaroon's valid_until. */
    expireAll: (on = true) => {
      expireAll = on;
    },
    expire: (mac: string) => expired.add(mac),
    preimageOf: (hash: string) => preimages.get(hash),
    hashOfMacaroon: (mac: string) => macaroons.get(mac),
  };
}

type Gateway = ReturnType<typeof fakeGateway>;

/** A wallet that pays the fake gateway's invoices (it knows their preimages). */
function fakeWallet(gw: Gateway, behaviour: "pay" | "wrong_preimage" | "throw" = "pay") {
  const paid: string[] = [];
  const wallet: LightningWallet = {
    async payInvoice(pr) {
      paid.push(pr);
      if (behaviour === "throw") throw new Error("no route");
      const hash = bolt11.decode(pr, REGTEST).tagsObject.payment_hash!;
      const preimage = behaviour === "wrong_preimage" ? randomBytes(32).toString("hex") : gw.preimageOf(hash)!;
      return { preimage };
    },
  };
  return { wallet, paid };
}

const URL1 = "https://gw.example/mcp";
const URL2 = "https://other-gw.example/mcp";
const post = (headers: Record<string, string> = {}): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: '{"jsonrpc":"2.0","id":1,"method":"tools/call"}',
});

async function failure(p: Promise<Response>): Promise<TollboothError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TollboothError);
  return err as TollboothError;
}

function resolver(
  gw: Gateway,
  wallet: LightningWallet,
  extra: Partial<WithTollboothOptions> = {},
  limits = { maxSatsPerRequest: 100, maxSatsPerHour: 1000 },
) {
  let solves = 0;
  const pays: PayEvent[] = [];
  const tf = withTollbooth(gw.fetch, {
    maxDifficulty: 16,
    lightning: { wallet, ...limits },
    onSolve: () => solves++,
    onPay: (e) => pays.push(e),
    ...extra,
  });
  return { tf, pays, solves: () => solves };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("choosing among a PowChallenge and an L402 challenge", () => {
  it('pay ["l402", "pow"]: pays the invoice once, sends Authorization: L402 <macaroon>:<preimage>, solves nothing', async () => {
    const gw = fakeGateway();
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402", "pow"] });
    const res = await r.tf(URL1, post());
    expect(res.status).toBe(200);
    expect(paid).toHaveLength(1);
    expect(r.solves()).toBe(0);
    expect(gw.log.map((e) => e.status)).toEqual([402, 200]);
    const auth = gw.log[1]!.headers.get(AUTHORIZATION_HEADER)!;
    expect(auth).toMatch(/^L402 [A-Za-z0-9+/=]+:[0-9a-f]{64}$/);
    const [mac, preimage] = auth.slice(5).split(":");
    expect(sha256hex(preimage!)).toBe(gw.hashOfMacaroon(mac!));
    expect(gw.log[1]!.headers.get(SOLUTION_HEADER)).toBeNull();
    expect(gw.log[1]!.headers.get(L402_HEADER)).toBeNull();
    expect(r.pays).toEqual([{ url: URL1, scheme: "l402", sats: 10, ms: expect.any(Number) }]);
  });

  it('pay ["pow", "l402"]: solves the proof of work, never calls the wallet', async () => {
    const gw = fakeGateway();
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["pow", "l402"] });
    expect((await r.tf(URL1, post())).status).toBe(200);
    expect(r.solves()).toBe(1);
    expect(paid).toHaveLength(0);
    expect(gw.log[1]!.headers.get(SOLUTION_HEADER)).toMatch(/^realm="tollbooth", id=".*", nonce="\d+"$/);
    expect(gw.log[1]!.headers.get(AUTHORIZATION_HEADER)).toBeNull();
  });

  it("by default (PoW only), even with a wallet configured, it solves and never pays", async () => {
    const gw = fakeGateway();
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet);
    for (let i = 0; i < 6; i++) expect((await r.tf(URL1, post())).status).toBe(200);
    expect(paid).toHaveLength(0);
    expect(r.solves()).toBe(2); // 5 credits a token, the redeeming call paying 1
    // And without any lightning option at all.
    const bare = withTollbooth(fakeGateway().fetch, { maxDifficulty: 16 });
    expect((await bare(URL1, post())).status).toBe(200);
  });

  it("a PoW-only agent facing a 402 with only an L402 challenge: challenge_unreadable, nothing paid", async () => {
    const gw = fakeGateway();
    const onlyL402: FetchLike = async (u, i) => {
      const res = await gw.fetch(u, i);
      const h = new Headers(res.headers);
      h.set(WWW_AUTHENTICATE_HEADER, res.headers.get(WWW_AUTHENTICATE_HEADER)!.replace(/^PowChallenge .*?, (?=L402 )/, ""));
      return new Response(res.body, { status: res.status, headers: h });
    };
    const err = await failure(withTollbooth(onlyL402)(URL1, post()));
    expect(err.code).toBe("challenge_unreadable");
    expect(err.status).toBe(402);
  });

  it('"l402" in pay without the lightning option: TypeError naming it, at construction', () => {
    expect(() => withTollbooth(fetch, { pay: ["l402"] })).toThrow(/lightning/);
    expect(() => withTollbooth(fetch, { pay: ["pow", "l402"] })).toThrow(TypeError);
    expect(() => withTollbooth(fetch, { pay: [] })).toThrow(/pay/);
    expect(() => withTollbooth(fetch, { pay: ["bitcoin" as "pow"] })).toThrow(/pay/);
  });
});

describe("spending limits", () => {
  it("an invoice over maxSatsPerRequest: payment_refused, nothing paid; with pow after l402 it solves instead", async () => {
    const gw = fakeGateway({ sats: 50 });
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402"] }, { maxSatsPerRequest: 49, maxSatsPerHour: 1000 });
    const err = await failure(r.tf(URL1, post()));
    expect(err.code).toBe("payment_refused");
    expect(err.status).toBe(402);
    expect(err.message).toMatch(/50 sats.*maxSatsPerRequest 49/);
    expect(paid).toHaveLength(0);

    const both = resolver(gw, wallet, { pay: ["l402", "pow"] }, { maxSatsPerRequest: 49, maxSatsPerHour: 1000 });
    expect((await both.tf(URL1, post())).status).toBe(200);
    expect(both.solves()).toBe(1);
    expect(paid).toHaveLength(0);
  });

  it("a PoW too hard and an L402 over the limit: payment_refused (not challenge_too_hard)", async () => {
    const gw = fakeGateway({ sats: 50, difficulty: 20 });
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["pow", "l402"] }, { maxSatsPerRequest: 10, maxSatsPerHour: 1000 });
    expect((await failure(r.tf(URL1, post()))).code).toBe("payment_refused");
    const powOnly = resolver(gw, wallet, {});
    expect((await failure(powOnly.tf(URL1, post()))).code).toBe("challenge_too_hard");
    expect(paid).toHaveLength(0);
  });

  it("maxSatsPerHour: a sliding hour of what this resolver paid, across origins", async () => {
    const gw = fakeGateway({ sats: 10, l402Credits: 1 });
    const { wallet, paid } = fakeWallet(gw);
    let now = 1_800_000_000_000;
    vi.spyOn(Date, "now").mockImplementation(() => now);
    const r = resolver(gw, wallet, { pay: ["l402"] }, { maxSatsPerRequest: 10, maxSatsPerHour: 25 });
    expect((await r.tf(URL1, post())).status).toBe(200); // 10
    now += 60_000;
    expect((await r.tf(URL2, post())).status).toBe(200); // 20, another origin
    now += 60_000;
    const err = await failure(r.tf(URL1, post())); // 30 > 25
    expect(err.code).toBe("payment_refused");
    expect(err.message).toMatch(/20 sats paid in the last hour.*maxSatsPerHour 25/);
    expect(paid).toHaveLength(2);
    now += 3_600_000 - 120_000; // the first payment leaves the window
    expect((await r.tf(URL2, post())).status).toBe(200);
    expect(paid).toHaveLength(3);
  });

  it("an amountless invoice is refused: payment_refused", async () => {
    const gw = fakeGateway({ sats: null });
    const { wallet, paid } = fakeWallet(gw);
    const err = await failure(resolver(gw, wallet, { pay: ["l402"] }).tf(URL1, post()));
    expect(err.code).toBe("payment_refused");
    expect(err.message).toMatch(/no amount/);
    expect(paid).toHaveLength(0);
  });
});

describe("the paid credential", () => {
  it("goes in Tollbooth-L402 when the request carries its own Authorization (kept as sent)", async () => {
    const gw = fakeGateway();
    const { wallet } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402"] });
    expect((await r.tf(URL1, post({ Authorization: "Bearer oauth-xyz" }))).status).toBe(200);
    expect((await r.tf(URL1, post({ Authorization: "Bearer oauth-xyz" }))).status).toBe(200);
    for (const e of gw.log) expect(e.headers.get(AUTHORIZATION_HEADER)).toBe("Bearer oauth-xyz");
    expect(gw.log.slice(1).map((e) => e.headers.get(L402_HEADER))).toEqual([
      expect.stringMatching(/^[A-Za-z0-9+/=]+:[0-9a-f]{64}$/),
      gw.log[1]!.headers.get(L402_HEADER),
    ]);
    // The same credential, without the request's Authorization, goes in Authorization.
    expect((await r.tf(URL1, post())).status).toBe(200);
    expect(gw.log.at(-1)!.headers.get(AUTHORIZATION_HEADER)).toBe(`L402 ${gw.log[1]!.headers.get(L402_HEADER)}`);
  });

  it("is reused across calls and dropped at Tollbooth-Credits: 0, then paid for again", async () => {
    const gw = fakeGateway({ l402Credits: 3 });
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402", "pow"] });
    for (let i = 0; i < 3; i++) expect((await r.tf(URL1, post())).status).toBe(200);
    expect(paid).toHaveLength(1);
    expect(gw.log.map((e) => e.status)).toEqual([402, 200, 200, 200]);
    const first = gw.log[1]!.headers.get(AUTHORIZATION_HEADER);
    expect(gw.log.slice(1).map((e) => e.headers.get(AUTHORIZATION_HEADER))).toEqual([first, first, first]);
    // The third answer said Tollbooth-Credits: 0: the fourth call goes without it.
    expect((await r.tf(URL1, post())).status).toBe(200);
    expect(gw.log[4]!.headers.get(AUTHORIZATION_HEADER)).toBeNull();
    expect(gw.log[4]!.status).toBe(402);
    expect(paid).toHaveLength(2);
    expect(gw.log[5]!.headers.get(AUTHORIZATION_HEADER)).not.toBe(first);
    // Another origin has its own.
    expect((await r.tf(URL2, post())).status).toBe(200);
    expect(gw.log[6]!.headers.get(AUTHORIZATION_HEADER)).toBeNull();
    expect(paid).toHaveLength(3);
  });

  it("concurrent 402s to one origin: one payment, the credential shared", async () => {
    const gw = fakeGateway({ l402Credits: 10 });
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402"] });
    const all = await Promise.all([r.tf(URL1, post()), r.tf(URL1, post()), r.tf(URL1, post())]);
    expect(all.map((x) => x.status)).toEqual([200, 200, 200]);
    expect(paid).toHaveLength(1);
  });

  it("a 401 l402_expired to a kept credential: dropped, one fresh payment, the call succeeds", async () => {
    const gw = fakeGateway({ l402Credits: 10 });
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402", "pow"] });
    expect((await r.tf(URL1, post())).status).toBe(200);
    const first = gw.log[1]!.headers.get(AUTHORIZATION_HEADER)!;
    gw.expire(first.slice(5).split(":")[0]!);
    expect((await r.tf(URL1, post())).status).toBe(200);
    expect(paid).toHaveLength(2);
    expect(gw.log.slice(2).map((e) => [e.status, e.headers.get(AUTHORIZATION_HEADER) === first])).toEqual([
      [401, true],
      [200, false],
    ]);
    expect(r.solves()).toBe(0);
  });

  it("a 401 l402_expired again right after paying: challenge_refused, status 401, no loop", async () => {
    const gw = fakeGateway({ l402Credits: 10 });
    const { wallet, paid } = fakeWallet(gw);
    const r = resolver(gw, wallet, { pay: ["l402"] });
    expect((await r.tf(URL1, post())).status).toBe(200);
    gw.expireAll();
    const err = await failure(r.tf(URL1, post()));
    expect(err.code).toBe("challenge_refused");
    expect(err.status).toBe(401);
    expect(err.message).toContain("l402_expired");
    expect(paid).toHaveLength(2);
    expect(gw.log.map((e) => e.status)).toEqual([402, 200, 401, 401]);
  });

  it("a 402 l402_exhausted to a kept credential (credits spent elsewhere): one fresh way through", async () => {
    const gw = fakeGateway({ l402Credits: 1 });
    const { wallet, paid } = fakeWallet(gw);
    // The gateway says nothing about credits: the resolver learns from the 402.
    const silent: FetchLike = async (u, i) => {
      const res = await gw.fetch(u, i);
      const h = new Headers(res.headers);
      h.delete(CREDITS_HEADER);
      return new Response(res.body, { status: res.status, headers: h });
    };
    const tf = withTollbooth(silent, { pay: ["l402", "pow"], lightning: { wallet, maxSatsPerRequest: 10, maxSatsPerHour: 100 } });
    expect((await tf(URL1, post())).status).toBe(200);
    expect((await tf(URL1, post())).status).toBe(200);
    expect(gw.log.map((e) => e.status)).toEqual([402, 200, 402, 200]);
    expect(paid).toHaveLength(2);
  });

  it("a 401 that is not tollbooth's (the origin's OAuth) is returned untouched", async () => {
    const gw = fakeGateway();
    const { wallet, paid } = fakeWallet(gw);
    const oauth: FetchLike = async () =>
      new Response('{"error":"invalid_token"}', {
        status: 401,
        headers: { [WWW_AUTHENTICATE_HEADER]: 'Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource"' },
      });
    const tf = withTollbooth(oauth, { pay: ["l402", "pow"], lightning: { wallet, maxSatsPerRequest: 10, maxSatsPerHour: 100 } });
    const res = await tf(URL1, post());
    expect(res.status).toBe(401);
    expect(await res.text()).toBe('{"error":"invalid_token"}');
    expect(paid).toHaveLength(0);
  });
});

describe("wallet failures", () => {
  it("a preimage that does not hash to the payment hash: payment_failed, nothing sent", async () => {
    const gw = fakeGateway();
    const { wallet, paid } = fakeWallet(gw, "wrong_preimage");
    const r = resolver(gw, wallet, { pay: ["l402", "pow"] });
    const err = await failure(r.tf(URL1, post()));
    expect(err.code).toBe("payment_failed");
    expect(err.message).toMatch(/does not hash/);
    expect(paid).toHaveLength(1);
    expect(gw.log).toHaveLength(1);
    expect(r.pays).toHaveLength(0);
  });

  it("a wallet that throws: payment_failed", async () => {
    const gw = fakeGateway();
    const { wallet } = fakeWallet(gw, "throw");
    const err = await failure(resolver(gw, wallet, { pay: ["l402"] }).tf(URL1, post()));
    expect(err.code).toBe("payment_failed");
    expect(err.message).toContain("no route");
  });
});
