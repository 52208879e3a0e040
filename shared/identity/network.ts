/**
 * The caller's network: an IP address (from `CF-Connecting-IP`) reduced to a configured
 * prefix length, in one canonical spelling, so every address of one network names one
 * bucket and every spelling of one address names the same one.
 */

/**
 * IP address → network string.
 * - IPv4 (and IPv4-mapped IPv6, `::ffff:a.b.c.d`): the address with its host bits zeroed,
 *   written `a.b.c.d` at prefix 32 and `a.b.c.d/<prefix>` below (e.g. `10.1.0.0/16`).
 * - IPv6: the address with its host bits zeroed, in RFC 5952 form (lowercase, longest run
 *   of two or more zero groups compressed), `/<prefix>` appended below 128
 *   (e.g. `2001:db8:1:2::/64`, `2001:db8:1::/48`). Zone ids (`%eth0`) are dropped.
 * At most 43 characters (`ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127`).
 * @param ip the address text, e.g. `203.0.113.7`, `2001:DB8::1`
 * @param ipv4Prefix prefix length for IPv4, 0–32
 * @param ipv6Prefix prefix length for IPv6, 0–128
 * @returns the network, or null when `ip` is not an IP address
 */
export function networkOf(ip: string, ipv4Prefix: number, ipv6Prefix: number): string | null {
  const v4 = parseIpv4(ip);
  if (v4) return formatIpv4(v4, ipv4Prefix);
  const groups = parseIpv6(ip);
  if (!groups) return null;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return formatIpv4([groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255], ipv4Prefix);
  }
  return formatIpv6(groups, ipv6Prefix);
}

function parseIpv4(ip: string): number[] | null {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) return null;
  const octets = ip.split(".").map(Number);
  return octets.every((o) => o <= 255) ? octets : null;
}

function formatIpv4(octets: number[], prefix: number): string {
  const masked = octets.map((o, i) => o & maskByte(prefix - 8 * i));
  return prefix >= 32 ? masked.join(".") : `${masked.join(".")}/${prefix}`;
}

/** Mask of one 8-bit unit given the prefix bits that remain from its start. */
const maskByte = (bits: number) => (bits >= 8 ? 0xff : bits <= 0 ? 0 : (0xff << (8 - bits)) & 0xff);

function formatIpv6(groups: number[], prefix: number): string {
  const masked = groups.map((g, i) => {
    const bits = prefix - 16 * i;
    return bits >= 16 ? g : bits <= 0 ? 0 : g & ((0xffff << (16 - bits)) & 0xffff);
  });
  // RFC 5952 §4.2: compress the longest run of ≥ 2 zero groups (the first on a tie).
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (masked[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && masked[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (part: number[]) => part.map((g) => g.toString(16)).join(":");
  const text = bestAt < 0 ? hex(masked) : `${hex(masked.slice(0, bestAt))}::${hex(masked.slice(bestAt + bestLen))}`;
  return prefix >= 128 ? text : `${text}/${prefix}`;
}

/** The eight 16-bit groups of an IPv6 address (any RFC 4291 spelling, optional zone), or null. */
function parseIpv6(ip: string): number[] | null {
  let text = ip.replace(/%.*$/, "").toLowerCase();
  const v4 = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (v4) {
    const octets = parseIpv4(v4[1]!);
    if (!octets) return null;
    text = `${text.slice(0, -v4[1]!.length)}${((octets[0]! << 8) | octets[1]!).toString(16)}:${((octets[2]! << 8) | octets[3]!).toString(16)}`;
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
