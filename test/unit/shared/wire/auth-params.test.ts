/**
 * Auth-params as RFC 9110 §11.2 writes them (shared/wire/auth-params.ts): `formatAuthParams`
 * quotes and escapes strings and refuses a name that is not a token; `parseAuthParams` reads
 * both forms back exactly and refuses a repeated name (in any case), malformed or oversized
 * values, and `__proto__` games.
 */
import { describe, expect, it } from "vitest";
import { formatAuthParams, parseAuthParams } from "../../../../shared/wire/auth-params.ts";

describe("formatAuthParams", () => {
  it("writes the scheme, quoted strings and bare numbers, comma-separated", () => {
    expect(formatAuthParams("PowChallenge", { realm: "tollbooth", difficulty: 16 })).toBe('PowChallenge realm="tollbooth", difficulty=16');
  });

  it("omits the scheme when it is null", () => {
    expect(formatAuthParams(null, { a: "x", b: 2 })).toBe('a="x", b=2');
  });

  it("escapes backslash and double quote inside quoted strings", () => {
    expect(formatAuthParams(null, { v: 'say "hi" \\o/' })).toBe('v="say \\"hi\\" \\\\o/"');
  });

  it("refuses a parameter name that is not a token", () => {
    expect(() => formatAuthParams("S", { "bad name": "x" })).toThrow(TypeError);
    expect(() => formatAuthParams("S", { "a=b": "x" })).toThrow(TypeError);
    expect(() => formatAuthParams("S", { "": "x" })).toThrow(TypeError);
  });
});

describe("parseAuthParams", () => {
  it("reads a scheme followed by parameters", () => {
    const parsed = parseAuthParams('PowChallenge realm="tollbooth", difficulty=16, algorithm="sha256"');
    expect(parsed?.scheme).toBe("PowChallenge");
    expect({ ...parsed?.params }).toEqual({ realm: "tollbooth", difficulty: "16", algorithm: "sha256" });
  });

  it("reads parameters without a scheme", () => {
    const parsed = parseAuthParams('nonce="123", id=abc');
    expect(parsed?.scheme).toBeNull();
    expect({ ...parsed?.params }).toEqual({ nonce: "123", id: "abc" });
  });

  it("reads a bare scheme with no parameters", () => {
    const parsed = parseAuthParams("PowChallenge");
    expect(parsed?.scheme).toBe("PowChallenge");
    expect({ ...parsed?.params }).toEqual({});
  });

  it("lowercases parameter names", () => {
    expect({ ...parseAuthParams('S Realm="x", NONCE=5')?.params }).toEqual({ realm: "x", nonce: "5" });
  });

  it("tolerates optional whitespace around '=' and ','", () => {
    expect({ ...parseAuthParams('S  a = "x" ,\tb=2 ')?.params }).toEqual({ a: "x", b: "2" });
  });

  it("unescapes quoted-pair sequences", () => {
    expect(parseAuthParams('S v="a\\"b\\\\c\\d"')?.params.v).toBe('a"b\\cd');
  });

  it("keeps commas and spaces inside quoted strings", () => {
    expect(parseAuthParams('S v="a, b=c", w=1')?.params).toMatchObject({ v: "a, b=c", w: "1" });
  });

  it("round-trips what formatAuthParams writes, including awkward strings", () => {
    const params = { realm: 'we "quote" \\ back', id: "a,b=c", difficulty: 16, empty: "" };
    const parsed = parseAuthParams(formatAuthParams("PowChallenge", params));
    expect(parsed?.scheme).toBe("PowChallenge");
    expect({ ...parsed?.params }).toEqual({ realm: params.realm, id: params.id, difficulty: "16", empty: "" });
  });

  it("refuses a parameter named twice, whatever its case", () => {
    expect(parseAuthParams('S a="1", a="2"')).toBeNull();
    expect(parseAuthParams('S a="1", A="2"')).toBeNull();
  });

  it("refuses malformed values", () => {
    const bad = [
      "",
      "   ",
      'S a="unterminated',
      'S a="ends in backslash\\',
      "S a=",
      "S a",
      "S a=1 b=2",
      "S a=1,",
      "S a=1,,b=2",
      "S ,a=1",
      'S a="1" junk',
      "S a=b=c",
      "=x",
    ];
    for (const header of bad) expect(parseAuthParams(header), header).toBeNull();
  });

  it("refuses values longer than 8 KiB", () => {
    const header = (n: number) => `S v="${"x".repeat(n)}"`;
    const fits = 8192 - header(0).length;
    expect(header(fits).length).toBe(8192);
    expect(parseAuthParams(header(fits))?.params.v).toHaveLength(fits);
    expect(parseAuthParams(header(fits + 1))).toBeNull();
  });

  it("does not let a parameter named __proto__ pollute anything", () => {
    const parsed = parseAuthParams('S __proto__="x", constructor="y"');
    expect(parsed?.params.__proto__).toBe("x");
    expect(parsed?.params.constructor).toBe("y");
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
