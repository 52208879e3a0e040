/**
 * Caller identity: who a token bucket belongs to. Strategies are tried in the order the
 * policy lists them; the first that applies wins.
 * - `authorization`: SHA-256 of the `Authorization` header value → `auth:<hex>`
 * - `api-key`: SHA-256 of the configured API-key header value → `key:<hex>`
 * - `ip`: `CF-Connecting-IP`, IPv6 reduced to its /64 → `ip:<address>`
 * Never `Mcp-Session-Id`: a caller mints new sessions freely. A request that matches
 * no strategy is `anonymous` (one shared bucket).
 */
import { toHex, utf8 } from "./encoding.ts";
import type { Policy } from "./policy.ts";

/** Identity of callers no strategy could name. */
export const ANONYMOUS = "anonymous";

/** Most credential hashes remembered per isolate (oldest dropped first). */
const HASH_MEMO_MAX = 1024;
/**
 * `prefix + "\n" + credential` → identity. An agent sends the same credential on every
 * call, so each is hashed once per isolate. The credentials are held only in this
 * isolate's memory, which sees them on every request anyway.
 */
const hashMemo = new Map<string, string>();

async function hashed(prefix: string, value: string): Promise<string> {
  const memo = `${prefix}\n${value}`;
  const known = hashMemo.get(memo);
  if (known !== undefined) return known;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(value)));
  const identity = `${prefix}:${toHex(digest.subarray(0, 16))}`;
  if (hashMemo.size >= HASH_MEMO_MAX) hashMemo.delete(hashMemo.keys().next().value!);
  hashMemo.set(memo, identity);
  return identity;
}

/**
 * Resolve the caller identity of a request.
 * @param headers the request headers
 * @param config `policy.identity`
 * @returns an identity string of at most 64 characters, e.g. `auth:3f…`, `ip:203.0.113.7`,
 *   `ip:2001:db8:1:2::/64`, or `anonymous`
 */
export async function resolveIdentity(headers: Headers, config: Policy["identity"]): Promise<string> {
  for (const strategy of config.strategies) {
    if (strategy === "authorization") {
      const value = headers.get("authorization");
      if (value) return hashed("auth", value);
    } else if (strategy === "api-key") {
      const value = headers.get(config.apiKeyHeader);
      if (value) return hashed("key", value);
    } else {
      const ip = headers.get("cf-connecting-ip");
      const normalized = ip ? normalizeIp(ip.trim()) : null;
      if (normalized) return `ip:${normalized}`;
    }
  }
  return ANONYMOUS;
}

/**
 * Normalize an IP address: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 reduced to
 * its /64 prefix (one subscriber usually holds a whole /64).
 * @returns e.g. `203.0.113.7` or `2001:db8:0:1::/64`; `null` when not an IP address
 */
export function normalizeIp(ip: string): string | null {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) {
    return ip.split(".").every((o) => Number(o) <= 255) ? ip.split(".").map(Number).join(".") : null;
  }
  const groups = expandIpv6(ip);
  if (!groups) return null;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join(".");
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

function expandIpv6(ip: string): number[] | null {
  let text = ip.replace(/%.*$/, "").toLowerCase();
  const v4 = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (v4) {
    const octets = v4[1]!.split(".").map(Number);
    if (octets.some((o) => o > 255)) return null;
    text = text.slice(0, -v4[1]!.length) + `${((octets[0]! << 8) | octets[1]!).toString(16)}:${((octets[2]! << 8) | octets[3]!).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === "" ? [] : part.split(":"));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!all.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return null;
  return all.map((g) => parseInt(g, 16));
}
