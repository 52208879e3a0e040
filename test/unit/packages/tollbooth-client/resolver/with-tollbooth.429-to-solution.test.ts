/**
 * `withTollbooth` when a ceiling answers its solution with 429 (the gateway checks the
 * caller's `ceiling` before redeeming anything): after waiting `Retry-After` it sends the
 * same solution again, and gets through; a second 429 ends the call as `rate_limited`.
 * Found by test/e2e/packages.test.ts (200 calls through a tiny bucket meet the default
 * ceiling of 60 + 10/s), where the retry used to go out without the solution and the call
 * ended as `challenge_refused`.
 */
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { TollboothError } from "../../../../../packages/tollbooth-client/src/errors.ts";
import { withTollbooth } from "../../../../../packages/tollbooth-client/src/index.ts";
import { formatAuthParams } from "../../../../../shared/wire/auth-params.ts";
import { CREDITS_HEADER, SOLUTION_HEADER, TOKEN_HEADER, WWW_AUTHENTICATE_HEADER } from "../../../../../shared/wire/headers.ts";

const DIFFICULTY = 6;

/** A scripted gateway: 402 without a valid solution; `ceiling429` 429s (Retry-After 0) to solutions first. */
function fakeGateway(ceiling429: number) {
  let left429 = ceiling429;
  const seen: { solution: string | null; token: string | null; status: number }[] = [];
  const json = (status: number, body: object, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
  const fetch = async (_url: string | URL, init?: RequestInit): Promise<Response> => {
    const h = new Headers(init?.headers);
    const solution = h.get(SOLUTION_HEADER);
    let res: Response;
    if (solution && left429 > 0) {
      left429--;
      res = json(
        429,
        { jsonrpc: "2.0", id: 1, error: { code: 429, message: "ceiling", data: { reason: "ceiling" } } },
        { "retry-after": "0" },
      );
    } else if (solution) {
      const salt = /salt="([0-9a-f]+)"/.exec(solution)?.[1];
      const nonce = /nonce="([0-9]+)"/.exec(solution)?.[1];
      const digest = createHash("sha256").update(`${salt}${nonce}`).digest();
      const good = salt !== undefined && nonce !== undefined && digest.readUInt32BE(0) >>> (32 - DIFFICULTY) === 0;
      const token = `tb1.k1.${Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 300 })).toString("base64url")}.sig`;
      res = good
        ? json(200, { jsonrpc: "2.0", id: 1, result: {} }, { [TOKEN_HEADER]: token, [CREDITS_HEADER]: "4" })
        : json(402, { error: "bad solution" });
    } else {
      const challenge = formatAuthParams("PowChallenge", {
        realm: "tollbooth",
        id: randomBytes(16).toString("base64url"),
        salt: randomBytes(16).toString("hex"),
        difficulty: DIFFICULTY,
        algorithm: "sha256",
        expires: 1_900_000_000,
        credits: 5,
        kid: "k1",
        signature: "sig",
      });
      res = json(402, { jsonrpc: "2.0", id: 1, error: { code: 402, message: "over budget" } }, { [WWW_AUTHENTICATE_HEADER]: challenge });
    }
    seen.push({ solution, token: h.get(TOKEN_HEADER), status: res.status });
    return res;
  };
  return { fetch, seen };
}

describe("withTollbooth: a 429 to its solution", () => {
  it("waits Retry-After and sends the same solution again: the call gets through", async () => {
    const gw = fakeGateway(1);
    const res = await withTollbooth(gw.fetch)("https://gw.example/mcp", { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    expect(gw.seen.map((s) => s.status)).toEqual([402, 429, 200]);
    expect(gw.seen[1]!.solution).toMatch(/nonce="[0-9]+"/);
    expect(gw.seen[2]!.solution).toBe(gw.seen[1]!.solution);
  });

  it("a second 429 to the solution ends the call as rate_limited (no third try)", async () => {
    const gw = fakeGateway(2);
    const error = await withTollbooth(gw.fetch)("https://gw.example/mcp", { method: "POST", body: "{}" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TollboothError);
    expect((error as TollboothError).code).toBe("rate_limited");
    expect(gw.seen.map((s) => s.status)).toEqual([402, 429, 429]);
  });
});
