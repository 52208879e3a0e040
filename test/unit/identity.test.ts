import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ANONYMOUS, normalizeIp, resolveIdentity } from "../../shared/identity.ts";
import { type Policy, parsePolicy } from "../../shared/policy.ts";

const defaults: Policy["identity"] = parsePolicy({}).identity;
const sha256hex = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const h = (init: Record<string, string>) => new Headers(init);

/** Checks `id` is `<prefix>:<hex>` where hex is a prefix of SHA-256(value). */
function expectHashed(id: string, prefix: string, value: string) {
  const m = new RegExp(`^${prefix}:([0-9a-f]{16,64})$`).exec(id);
  expect(m, id).not.toBeNull();
  expect(sha256hex(value).startsWith(m![1]!)).toBe(true);
}

describe("resolveIdentity", () => {
  it("names a caller by a hash of the Authorization header", async () => {
    const id = await resolveIdentity(h({ authorization: "Bearer sk-live-123" }), defaults);
    expectHashed(id, "auth", "Bearer sk-live-123");
    expect(id).not.toContain("sk-live-123");
    expect(id.length).toBeLessThanOrEqual(64);
  });

  it("gives different callers different identities and the same caller the same one", async () => {
    const a1 = await resolveIdentity(h({ authorization: "Bearer a" }), defaults);
    const a2 = await resolveIdentity(h({ authorization: "Bearer a" }), defaults);
    const b = await resolveIdentity(h({ authorization: "Bearer b" }), defaults);
    expect(a1).toBe(a2);
    expect(a1).not.toBe(b);
  });

  it("prefers Authorization over the IP address by default", async () => {
    const headers = h({ authorization: "Bearer x", "cf-connecting-ip": "203.0.113.7", "x-api-key": "k" });
    expectHashed(await resolveIdentity(headers, defaults), "auth", "Bearer x");
  });

  it("prefers the API key over the IP address by default", async () => {
    const headers = h({ "cf-connecting-ip": "203.0.113.7", "x-api-key": "my-key" });
    expectHashed(await resolveIdentity(headers, defaults), "key", "my-key");
  });

  it("uses the IP address when no credential is sent", async () => {
    expect(await resolveIdentity(h({ "cf-connecting-ip": "203.0.113.7" }), defaults)).toBe("ip:203.0.113.7");
  });

  it("respects the configured strategy order", async () => {
    const headers = h({ authorization: "Bearer x", "cf-connecting-ip": "203.0.113.7", "x-api-key": "k" });
    expect(await resolveIdentity(headers, { ...defaults, strategies: ["ip", "authorization"] })).toBe("ip:203.0.113.7");
    expectHashed(await resolveIdentity(headers, { ...defaults, strategies: ["api-key", "authorization", "ip"] }), "key", "k");
    expectHashed(await resolveIdentity(headers, { ...defaults, strategies: ["authorization", "api-key"] }), "auth", "Bearer x");
  });

  it("uses only the configured strategies", async () => {
    const headers = h({ authorization: "Bearer x", "x-api-key": "k" });
    expect(await resolveIdentity(headers, { ...defaults, strategies: ["ip"] })).toBe(ANONYMOUS);
  });

  it("reads the API key from the configured header", async () => {
    const config = { ...defaults, apiKeyHeader: "X-Tenant-Key" };
    const headers = h({ "x-tenant-key": "tenant-1", "x-api-key": "ignored", "cf-connecting-ip": "203.0.113.7" });
    expectHashed(await resolveIdentity(headers, config), "key", "tenant-1");
    // With that header configured, x-api-key is not a credential.
    expect(await resolveIdentity(h({ "x-api-key": "k", "cf-connecting-ip": "203.0.113.7" }), config)).toBe("ip:203.0.113.7");
  });

  it("keeps an Authorization value and an API key with the same text apart", async () => {
    const auth = await resolveIdentity(h({ authorization: "same" }), defaults);
    const key = await resolveIdentity(h({ "x-api-key": "same" }), defaults);
    expect(auth).not.toBe(key);
  });

  it("skips empty credential headers", async () => {
    const headers = h({ authorization: "", "x-api-key": "", "cf-connecting-ip": "203.0.113.7" });
    expect(await resolveIdentity(headers, defaults)).toBe("ip:203.0.113.7");
  });

  it("never uses Mcp-Session-Id (a caller mints sessions freely)", async () => {
    const one = await resolveIdentity(h({ "mcp-session-id": "s1", "cf-connecting-ip": "203.0.113.7" }), defaults);
    const two = await resolveIdentity(h({ "mcp-session-id": "s2", "cf-connecting-ip": "203.0.113.7" }), defaults);
    expect(one).toBe(two);
    expect(one).toBe("ip:203.0.113.7");
    expect(await resolveIdentity(h({ "mcp-session-id": "s1" }), defaults)).toBe(ANONYMOUS);
  });

  it("does not trust client-supplied forwarding headers", async () => {
    const headers = h({ "x-forwarded-for": "198.51.100.1", "x-real-ip": "198.51.100.2", forwarded: "for=198.51.100.3" });
    expect(await resolveIdentity(headers, defaults)).toBe(ANONYMOUS);
    const withIp = h({ "x-forwarded-for": "198.51.100.1", "cf-connecting-ip": "203.0.113.7" });
    expect(await resolveIdentity(withIp, defaults)).toBe("ip:203.0.113.7");
  });

  it("falls back to anonymous when nothing identifies the caller", async () => {
    expect(ANONYMOUS).toBe("anonymous");
    expect(await resolveIdentity(h({}), defaults)).toBe(ANONYMOUS);
    expect(await resolveIdentity(h({ "cf-connecting-ip": "not an ip" }), defaults)).toBe(ANONYMOUS);
  });

  it("reduces IPv6 callers to their /64", async () => {
    const a = await resolveIdentity(h({ "cf-connecting-ip": "2001:db8:1:2::1" }), defaults);
    const b = await resolveIdentity(h({ "cf-connecting-ip": "2001:db8:1:2:ffff:ffff:ffff:ffff" }), defaults);
    const c = await resolveIdentity(h({ "cf-connecting-ip": "2001:db8:1:3::1" }), defaults);
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(a).toMatch(/^ip:.*\/64$/);
  });

  it("stays within 64 characters for the longest IPv6 prefix", async () => {
    const id = await resolveIdentity(h({ "cf-connecting-ip": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" }), defaults);
    expect(id.length).toBeLessThanOrEqual(64);
  });
});

describe("normalizeIp", () => {
  it("keeps IPv4 addresses as they are", () => {
    expect(normalizeIp("203.0.113.7")).toBe("203.0.113.7");
    expect(normalizeIp("0.0.0.0")).toBe("0.0.0.0");
    expect(normalizeIp("255.255.255.255")).toBe("255.255.255.255");
  });

  it("refuses invalid IPv4 addresses", () => {
    for (const bad of ["256.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.-4", "1.2.3.4 ", "a.b.c.d"]) expect(normalizeIp(bad), bad).toBeNull();
  });

  it("puts two addresses in the same /64 together", () => {
    expect(normalizeIp("2001:db8:aa:bb:1:2:3:4")).toBe(normalizeIp("2001:db8:aa:bb:ffff::"));
    expect(normalizeIp("2001:db8:aa:bb::1")).toBe("2001:db8:aa:bb::/64");
  });

  it("keeps addresses in different /64s apart", () => {
    expect(normalizeIp("2001:db8:aa:bb::1")).not.toBe(normalizeIp("2001:db8:aa:bc::1"));
    expect(normalizeIp("2001:db8:aa:bb::1")).not.toBe(normalizeIp("2001:db9:aa:bb::1"));
  });

  it("gives every spelling of one address the same identity", () => {
    const spellings = [
      "2001:db8:0:1::7",
      "2001:DB8:0:1::7",
      "2001:0db8:0000:0001:0000:0000:0000:0007",
      "2001:db8::1:0:0:0:7",
      "2001:db8:0:1:0:0:0:7",
      "2001:db8:0:1::7%eth0",
    ];
    const ids = new Set(spellings.map((s) => normalizeIp(s)));
    expect(ids.size).toBe(1);
    expect([...ids][0]).not.toBeNull();
  });

  it("treats IPv4-mapped IPv6 as the IPv4 address", () => {
    expect(normalizeIp("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(normalizeIp("::FFFF:203.0.113.7")).toBe("203.0.113.7");
    expect(normalizeIp("::ffff:cb00:7107")).toBe("203.0.113.7");
    expect(normalizeIp("0:0:0:0:0:ffff:203.0.113.7")).toBe("203.0.113.7");
  });

  it("refuses invalid IPv6 addresses", () => {
    const bad = [
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1::2::3",
      "12345::1",
      "g::1",
      ":1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "::ffff:256.0.0.1",
      "",
      "localhost",
    ];
    for (const ip of bad) expect(normalizeIp(ip), ip).toBeNull();
  });
});
