/**
 * The credentials step (workers/pipeline/credentials.ts) with the proof-of-work scheme (the
 * default policy's only one) and access tokens, verified statelessly; what the caller's
 * object is then asked to spend; the slot a request opens. No binding is reached.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { issueChallenge } from "../../../../shared/credentials/challenge.ts";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { newTokenId, signToken } from "../../../../shared/credentials/token.ts";
import { formatChallenge } from "../../../../shared/wire/pow.ts";
import { body } from "../../../../workers/pipeline/body.ts";
import { credentials, payerNamedBy } from "../../../../workers/pipeline/credentials.ts";
import { identity } from "../../../../workers/pipeline/identity.ts";
import type { Carrying, Known, Read } from "../../../../workers/pipeline/state.ts";
import { arrival, depsFor, IP, request, SECRET, solve, toolCall } from "./support.ts";

const deps = depsFor({ challenge: { difficulty: 4, credits: 20 } });
const CALLER = `ip:${IP}`;
const PAYER = `evm:0x${"ab".repeat(20)}`;
let keyring: Keyring;
beforeAll(async () => {
  keyring = await importKeyring(SECRET);
});

/** The state after the identity step, for `req`. */
async function known(req: Request): Promise<Known> {
  return (await identity((await body(arrival(req), deps)) as Read, deps)) as Known;
}

/** A `Tollbooth-Solution` solving a fresh challenge bound to `caller`. */
async function solution(caller = CALLER, opts: { tamper?: boolean } = {}): Promise<{ header: string; id: string }> {
  const ch = await issueChallenge(keyring, { realm: "tollbooth", difficulty: 4, credits: 20, ttlSeconds: 120, caller, nowMs: Date.now() });
  const params = formatChallenge(ch).replace(/^PowChallenge\s+/, "");
  const header = `${params}, nonce="${solve(ch.salt, ch.difficulty)}"`;
  return { header: opts.tamper ? header.replace(/credits=(")?20/, "credits=$1200") : header, id: ch.id };
}

const token = (sub: string, key = keyring) => signToken(key, { sub, jti: newTokenId(), exp: Math.floor(Date.now() / 1000) + 300, cr: 20 });

describe("no credential", () => {
  it("the identity's request: nothing to redeem, the cost and the plan's buckets for the object", async () => {
    const s = await known(request("POST", "/mcp", { body: toolCall(1) }));
    const c = (await credentials(s, deps)) as Carrying;
    expect([c.caller, c.credential.carried, c.slot]).toEqual([CALLER, false, undefined]);
    expect(c.admit).toEqual({ cost: 1, nowMs: s.nowMs, bucket: s.plan.bucket, ceiling: s.plan.ceiling, challenge: s.plan.challenge });
  });

  it("an initialize opens a session slot, a GET on the endpoint a stream slot; other requests none", async () => {
    const init = (await credentials(
      await known(request("POST", "/mcp", { body: { jsonrpc: "2.0", id: 1, method: "initialize", params: {} } })),
      deps,
    )) as Carrying;
    expect(init.slot).toMatchObject({ kind: "session", max: 16, expiresMs: init.nowMs + 3600_000 });
    expect(init.admit.slot).toBe(init.slot);
    const stream = (await credentials(await known(request("GET", "/mcp")), deps)) as Carrying;
    expect(stream.slot).toMatchObject({ kind: "stream", max: 4, expiresMs: stream.nowMs + 600_000 + 5_000 });
    expect(((await credentials(await known(request("GET", "/robots.txt")), deps)) as Carrying).slot).toBeUndefined();
  });
});

describe("a proof-of-work solution", () => {
  it("verified for its caller: its challenge's id to spend once, its credits, the token it buys; recorded as pow", async () => {
    const sol = await solution();
    const s = await known(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-solution": sol.header } }));
    const c = (await credentials(s, deps)) as Carrying;
    expect(c.admit.redeem).toMatchObject({ spendId: sol.id, credits: 20, reusable: false, prefix: "solution", solve: true, difficulty: 4 });
    expect(c.credential).toMatchObject({
      carried: true,
      via: "pow",
      paidAs: "solution",
      tokenClaims: { sub: CALLER, jti: c.admit.redeem!.jti, cr: 20 },
    });
    expect(s.record.scheme).toBe("pow");
  });

  it("refused statelessly, the object is told why (it still counts the request): another caller's, tampered, malformed", async () => {
    const cases: Array<[string, string]> = [
      [(await solution("ip:198.51.100.9")).header, "solution_bad_signature"],
      [(await solution(CALLER, { tamper: true })).header, "solution_bad_signature"],
      ["garbage", "solution_malformed"],
    ];
    for (const [header, reason] of cases) {
      const c = (await credentials(
        await known(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-solution": header } })),
        deps,
      )) as Carrying;
      expect([c.admit.refused, c.admit.redeem, c.caller, c.credential.carried], reason).toEqual([reason, undefined, CALLER, true]);
    }
  });
});

describe("an access token", () => {
  it("valid for its caller: its id, to spend its credits", async () => {
    const c = (await credentials(
      await known(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-token": await token(CALLER) } })),
      deps,
    )) as Carrying;
    expect(c.admit.tokenId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(c.credential).toMatchObject({ carried: true, via: "token", paidAs: "token" });
  });

  it("another caller's, or signed with another secret: refused with the token's reason", async () => {
    const other = await importKeyring("another-secret-0123456789abcdef");
    const cases: Array<[string, string]> = [
      [await token("ip:198.51.100.9"), "token_wrong_caller"],
      [await token(CALLER, other), "token_unknown_key"],
    ];
    for (const [t, reason] of cases) {
      const c = (await credentials(
        await known(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-token": t } })),
        deps,
      )) as Carrying;
      expect([c.admit.refused, c.admit.tokenId], reason).toEqual([reason, undefined]);
    }
  });

  it("bought by a payer: the request becomes the payer's (recorded so)", async () => {
    const s = await known(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-token": await token(PAYER) } }));
    const c = (await credentials(s, deps)) as Carrying;
    expect([c.caller, c.admit.refused, s.record.caller]).toEqual([PAYER, undefined, PAYER]);
  });

  it("a token whose payload was swapped for one naming a payer does not make the request the payer's: its signature decides, not its claim", async () => {
    const parts = (await token(CALLER)).split(".");
    const claims = JSON.parse(Buffer.from(parts[2]!, "base64url").toString("utf8")) as Record<string, unknown>;
    parts[2] = Buffer.from(JSON.stringify({ ...claims, sub: PAYER })).toString("base64url");
    const forged = parts.join(".");
    expect(payerNamedBy(forged)).toBe(PAYER);
    const c = (await credentials(
      await known(request("POST", "/mcp", { body: toolCall(1), headers: { "tollbooth-token": forged } })),
      deps,
    )) as Carrying;
    expect([c.caller, c.admit.refused]).toEqual([CALLER, "token_bad_signature"]);
  });

  it("a solution and a token together: the solution is the credential (the token is not spent)", async () => {
    const headers = { "tollbooth-solution": (await solution()).header, "tollbooth-token": await token(CALLER) };
    const c = (await credentials(await known(request("POST", "/mcp", { body: toolCall(1), headers })), deps)) as Carrying;
    expect([c.credential.via, c.admit.tokenId, c.admit.redeem?.prefix]).toEqual(["pow", undefined, "solution"]);
  });
});
