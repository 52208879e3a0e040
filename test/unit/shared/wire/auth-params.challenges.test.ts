/**
 * `parseChallenges` (shared/wire/auth-params.ts): a `WWW-Authenticate` list of challenges, RFC
 * 9110 §11.6.1, as `Headers.get` joins several field lines (docs/wire-contract.md §10–11).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AuthParams, formatAuthParams, parseChallenges, parseChallengesWithText } from "../../../../shared/wire/auth-params.ts";

/** Plain objects (params are null-prototype records) for `toEqual`. */
const plain = (list: AuthParams[] | null) => list?.map((c) => ({ scheme: c.scheme, params: { ...c.params } })) ?? null;

const POW = formatAuthParams("PowChallenge", {
  realm: "tollbooth",
  id: "Jm3kZq0aXb1cYd2eWf3g4h",
  salt: "4213e10a14cce4e16f0294845df116a0",
  difficulty: 16,
  algorithm: "sha256",
  expires: 1795247080,
  credits: 20,
  kid: "br7O9vb8",
  signature: "8jeB-x_y",
});
const MAC = "AgEJdG9sbGJvb3RoAkIAAJsf+/abc==";
const INVOICE = "lnbcrt100n1pjq8z3mpp5abcdef";

describe("parseChallenges", () => {
  it('reads a PowChallenge followed by an L402 challenge (two field lines joined with ", ")', () => {
    const headers = new Headers();
    headers.append("WWW-Authenticate", POW);
    headers.append("WWW-Authenticate", formatAuthParams("L402", { version: "0", token: MAC, macaroon: MAC, invoice: INVOICE }));
    const parsed = plain(parseChallenges(headers.get("www-authenticate")!));
    expect(parsed).toHaveLength(2);
    expect(parsed![0]!.scheme).toBe("PowChallenge");
    expect(parsed![0]!.params).toMatchObject({
      salt: "4213e10a14cce4e16f0294845df116a0",
      difficulty: "16",
      credits: "20",
      signature: "8jeB-x_y",
    });
    expect(parsed![1]).toEqual({ scheme: "L402", params: { version: "0", token: MAC, macaroon: MAC, invoice: INVOICE } });
  });

  it("reads Aperture's shape: LSAT and L402 for one macaroon and invoice", () => {
    const header = `LSAT macaroon="${MAC}", invoice="${INVOICE}", L402 macaroon="${MAC}", invoice="${INVOICE}"`;
    expect(plain(parseChallenges(header))).toEqual([
      { scheme: "LSAT", params: { macaroon: MAC, invoice: INVOICE } },
      { scheme: "L402", params: { macaroon: MAC, invoice: INVOICE } },
    ]);
  });

  it("keeps the text of each challenge's parameters exactly as received (for Tollbooth-Solution)", () => {
    const header = `${POW}, L402 token="${MAC}", invoice="${INVOICE}"`;
    const parsed = parseChallengesWithText(header)!;
    expect(parsed[0]!.text).toBe(POW.slice("PowChallenge ".length));
    expect(parsed[1]!.text).toBe(`token="${MAC}", invoice="${INVOICE}"`);
  });

  it("quoted strings may hold commas, escaped quotes and what looks like another challenge", () => {
    const header = 'A realm="x, y", note="say \\"hi\\", B c=d", B e=f';
    expect(plain(parseChallenges(header))).toEqual([
      { scheme: "A", params: { realm: "x, y", note: 'say "hi", B c=d' } },
      { scheme: "B", params: { e: "f" } },
    ]);
  });

  it('a token68 is kept as the parameter named ""', () => {
    expect(plain(parseChallenges("A a="))).toEqual([{ scheme: "A", params: { "": "a=" } }]); // token68 "a=", not a parameter
    expect(plain(parseChallenges('Basic dXNlcjpwYXNz, Negotiate abc==, Bearer realm="api"'))).toEqual([
      { scheme: "Basic", params: { "": "dXNlcjpwYXNz" } },
      { scheme: "Negotiate", params: { "": "abc==" } },
      { scheme: "Bearer", params: { realm: "api" } },
    ]);
    expect(parseChallengesWithText("Negotiate abc==")![0]!.text).toBe("abc==");
  });

  it("bare schemes, empty list elements, tabs and spaces around = (BWS)", () => {
    expect(plain(parseChallenges(' , Foo ,, Bar a = 1 ,\tb="2" , Baz'))).toEqual([
      { scheme: "Foo", params: {} },
      { scheme: "Bar", params: { a: "1", b: "2" } },
      { scheme: "Baz", params: {} },
    ]);
    expect(parseChallenges("")).toEqual([]);
    expect(parseChallenges("  ")).toEqual([]);
  });

  it("lowercases parameter names, keeps scheme case", () => {
    expect(plain(parseChallenges('l402 Token="t", INVOICE="i"'))).toEqual([{ scheme: "l402", params: { token: "t", invoice: "i" } }]);
  });

  it("null when malformed or longer than 8 KiB", () => {
    for (const bad of [
      'A realm="unterminated',
      'A realm="x\\',
      'A a="1", b=',
      "A a=1, b= ,",
      'A a="1", a="2"',
      'A a="1", A="2"',
      'A abc==, realm="x"',
      "A a=1 b=2",
      'A a="1" junk',
      "=x",
      'A a="1", , =',
      "@ a=1",
      'Scheme a="1"; b=2',
    ]) {
      expect(parseChallenges(bad), bad).toBeNull();
    }
    // A trailing empty list element is allowed (RFC 9110 §5.6.1).
    expect(plain(parseChallenges("A a=1,"))).toEqual([{ scheme: "A", params: { a: "1" } }]);
    expect(parseChallenges(`A v="${"x".repeat(8200)}"`)).toBeNull();
    expect(parseChallenges(`A v="${"x".repeat(8000)}"`)).not.toBeNull();
  });

  it("the same parameter name may appear in different challenges", () => {
    expect(plain(parseChallenges('A realm="1", B realm="2"'))).toEqual([
      { scheme: "A", params: { realm: "1" } },
      { scheme: "B", params: { realm: "2" } },
    ]);
  });

  it('property: formatAuthParams of random challenges joined with ", " parses back to the same list', () => {
    const tchar = fc.constantFrom(..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split(""));
    const scheme = fc.string({ unit: tchar, minLength: 1, maxLength: 12 });
    const name = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-_.".split("")), minLength: 1, maxLength: 10 });
    const value = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: "grapheme", maxLength: 10 }),
      fc.integer({ min: 0, max: 2 ** 40 }),
      fc.constantFrom(", B x=1", '\\"', ", ", "="),
    );
    const challenge = fc.record({ scheme, params: fc.dictionary(name, value, { maxKeys: 6 }) });
    fc.assert(
      fc.property(fc.array(challenge, { maxLength: 6 }), (list) => {
        const header = list.map((c) => formatAuthParams(c.scheme, c.params)).join(", ");
        fc.pre(header.length <= 8192);
        const expected = list.map((c) => ({
          scheme: c.scheme,
          params: Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, String(v)])),
        }));
        expect(plain(parseChallenges(header))).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });
});
