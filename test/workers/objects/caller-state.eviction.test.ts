/**
 * A `CallerState` that is evicted from memory (idle, a deploy) or aborted (a crash, a
 * reset) comes back as a fresh instance that reads its SQLite storage: the free bucket,
 * a token's credits and a spent challenge survive until they expire, and the cleanup
 * alarm still deletes what has expired (docs/durable-object.md).
 */
import { abortAllDurableObjects, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  challengeOf,
  decodeToken,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  parseLimitList,
  post,
  reasonOf,
  request,
  rows,
  solve,
  stubFor,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

// Bucket of 3 that refills one unit per 1000 s; challenges live 10 s, tokens 60 s, 5 credits.
const POLICY = {
  bucket: { capacity: 3, refillPerSecond: 0.001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 6, credits: 5, ttlSeconds: 10 },
  token: { ttlSeconds: 60 },
};
const gw = gateway(POLICY);

let t0: number;
let ip: string;
let who: string;

beforeEach(() => {
  t0 = freezeTime();
  ip = freshIp();
  who = ipIdentity(ip);
  observeOrigin();
});

/** Ways a Durable Object instance goes away while its storage stays. */
const RESTARTS: Array<[string, (stub: DurableObjectStub) => Promise<void>]> = [
  ["evicted (graceful)", (stub) => evictDurableObject(stub)],
  ["aborted (every instance reset)", () => abortAllDurableObjects()],
];

/**
 * Bring the caller's object to a known state: 2 of 3 free units spent, a token bought with
 * a solution (5 credits − 1 = 4) and then used once more (3 left), the challenge spent.
 */
async function spendEverything(): Promise<{ token: string; solution: string }> {
  for (const id of [1, 2]) expect((await gw(post(toolCall(id), { ip }))).status).toBe(200);
  const { header } = await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }));
  const paid = await gw(post(toolCall(3), { ip, headers: { "tollbooth-solution": header } }));
  expect(paid.status).toBe(200);
  expect(paid.headers.get("tollbooth-credits")).toBe("4");
  const token = paid.headers.get("tollbooth-token")!;
  const again = await gw(post(toolCall(4), { ip, headers: { "tollbooth-token": token } }));
  expect(again.headers.get("tollbooth-credits")).toBe("3");
  return { token, solution: header };
}

/** Mark the running instance (an in-memory property: a fresh instance does not have it). */
async function markInstance(): Promise<void> {
  await runInDurableObject(stubFor(who), (instance) => void ((instance as unknown as { marked?: boolean }).marked = true));
}
/** Whether the instance now running carries the mark of `markInstance`. */
async function sameInstance(): Promise<boolean> {
  return runInDurableObject(stubFor(who), (instance) => (instance as unknown as { marked?: boolean }).marked === true);
}

describe.each(RESTARTS)("a CallerState %s", (_how, restart) => {
  it("keeps the free bucket, the token's credits and the spent challenge", async () => {
    const { token, solution } = await spendEverything();
    await markInstance();
    await restart(stubFor(who));
    expect(await sameInstance()).toBe(false); // a fresh instance: all it knows comes from SQLite

    // The bucket: 1 unit left (no refill worth a unit in the frozen clock's 0 s).
    const status = await gw(request("GET", `${WELL_KNOWN}/status`, { ip, headers: { "tollbooth-token": token } }));
    expect(status.status).toBe(200);
    const s = (await status.json()) as { bucket: { remaining: number }; token: { credits: number } };
    expect(s.bucket.remaining).toBe(1);
    expect(s.token.credits).toBe(3);

    // The credits: spending goes on from 3.
    const withToken = await gw(post(toolCall(5), { ip, headers: { "tollbooth-token": token } }));
    expect(withToken.status).toBe(200);
    expect(withToken.headers.get("tollbooth-credits")).toBe("2");

    // The spent challenge: still refused, as a header and at /verify.
    expect(await reasonOf(await gw(post(toolCall(6), { ip, headers: { "tollbooth-solution": solution } })))).toBe("solution_spent");

    // The last free unit, then 402.
    const last = await gw(post(toolCall(7), { ip }));
    expect(last.status).toBe(200);
    expect(parseLimitList(last.headers.get("ratelimit")!).free!.r).toBe(0);
    const over = await gw(post(toolCall(8), { ip }));
    expect(await reasonOf(over)).toBe("over_budget");
  });

  it("a challenge spent through /verify stays spent", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { verifyBody, header } = await solve(ch);
    const verify = () =>
      gw(
        new Request(`${WELL_KNOWN}/verify`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body: JSON.stringify(verifyBody),
        }),
      );
    const first = await verify();
    expect(first.status).toBe(200);
    const { token } = (await first.json()) as { token: string };
    await markInstance();
    await restart(stubFor(who));
    expect(await sameInstance()).toBe(false);
    const replay = await verify();
    expect(replay.status).toBe(422);
    expect(((await replay.json()) as { reason: string }).reason).toBe("spent");
    expect(await reasonOf(await gw(post(toolCall(1), { ip, headers: { "tollbooth-solution": header } })))).toBe("solution_spent");
    const used = await gw(post(toolCall(2), { ip, headers: { "tollbooth-token": token } }));
    expect(used.headers.get("tollbooth-credits")).toBe("4");
  });

  it("after expiry, the alarm run by a fresh instance deletes the expired rows; the buckets stay", async () => {
    const { token } = await spendEverything();
    const jti = decodeToken(token).claims.jti;
    expect((await rows(who, "tokens")).map((r) => r.jti)).toEqual([jti]);
    expect(await rows(who, "spent")).toHaveLength(1);

    advance(61_000); // past the challenge (t0 + 10 s) and the token (t0 + 60 s)
    await markInstance();
    await restart(stubFor(who));
    expect(await sameInstance()).toBe(false);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "tokens")).toEqual([]);
    // The spent mark outlives its challenge by SPENT_MARGIN_MS (60 s): until t0 + 70 s.
    expect(await rows(who, "spent")).toHaveLength(1);

    advance(10_000); // t0 + 71 s: past the spent mark's margin too
    await markInstance();
    await restart(stubFor(who));
    expect(await sameInstance()).toBe(false);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([]);
    expect((await rows<{ name: string }>(who, "buckets")).map((r) => r.name).sort()).toEqual(["ceiling", "free"]);

    // The token is refused as expired; the free bucket is still as it was left (1 unit, +0.071 refill).
    const expired = await gw(post(toolCall(9), { ip, headers: { "tollbooth-token": token } }));
    expect(await reasonOf(expired)).toBe("token_expired");
    expect(challengeOf(expired).params.id).toBeTruthy();
    const free = await gw(post(toolCall(10), { ip }));
    expect(free.status).toBe(200);
    expect(parseLimitList(free.headers.get("ratelimit")!).free!.r).toBe(0);
    expect(Date.now()).toBe(t0 + 71_000);
  });
});
