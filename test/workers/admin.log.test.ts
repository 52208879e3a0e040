/**
 * The admin log (workers/admin/index.ts `adminLine`, docs/admin.md): every action an
 * operator asks and every refused token is one JSON line, `{"tollbooth":"admin",…}`, never
 * sampled; reads (the dashboard's polling) write none; no token and no full caller id in it.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { freshIp, gateway, ipIdentity, observeOrigin } from "./support.ts";

const TOKEN = "admin-token-0123456789abcdef-LOG";
const gw = gateway(
  { bucket: { capacity: 3, refillPerSecond: 0.0001 } },
  { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_DECISION_LOG_SAMPLE: "100" },
);

let lines: string[];
beforeEach(() => {
  lines = [];
  vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
});
const adminLines = () => lines.filter((l) => l.startsWith('{"tollbooth":"admin",')).map((l) => JSON.parse(l) as Record<string, unknown>);

function adminReq(method: string, path: string, body?: unknown, token = TOKEN): Request {
  return new Request(`http://gw.test/admin${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      "cf-connecting-ip": "192.0.2.251",
      ...(body ? { "content-type": "application/json" } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
}

describe("the admin log", () => {
  it("block and unblock are one line each, naming the action, the caller and the status; reads write none", async () => {
    observeOrigin();
    const id = ipIdentity(freshIp());
    const path = `/callers/${encodeURIComponent(id)}`;
    expect((await gw(adminReq("POST", `${path}/block`, { seconds: 60 }))).status).toBe(200);
    expect((await gw(adminReq("GET", path))).status).toBe(200);
    expect((await gw(adminReq("GET", "/stats"))).status).toBe(200);
    expect((await gw(adminReq("POST", `${path}/unblock`))).status).toBe(200);
    expect(adminLines()).toEqual([
      { tollbooth: "admin", time: expect.any(Number), method: "POST", action: "callers/block", target: id, status: 200 },
      { tollbooth: "admin", time: expect.any(Number), method: "POST", action: "callers/unblock", target: id, status: 200 },
    ]);
  });

  it("a refused token is logged (401), without the token; a key-hash caller is shortened", async () => {
    const hash = "ab".repeat(32);
    const res = await gw(
      adminReq("POST", `/callers/${encodeURIComponent(`key:${hash}`)}/reset`, undefined, "wrong-token-0123456789abcdef"),
    );
    expect(res.status).toBe(401);
    expect(adminLines()).toEqual([
      {
        tollbooth: "admin",
        time: expect.any(Number),
        method: "POST",
        action: "callers/reset",
        target: `key:${hash.slice(0, 12)}…`,
        status: 401,
      },
    ]);
    expect(lines.join("\n")).not.toContain("wrong-token");
    expect(lines.join("\n")).not.toContain(hash);
  });
});
