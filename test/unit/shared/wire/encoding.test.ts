/**
 * The encodings every signed value relies on (shared/wire/encoding.ts): UTF-8, hex, base64url
 * with exactly one accepted spelling per byte string (no padding, no standard alphabet, no
 * non-zero trailing bits), and `canonical`, whose length-prefixed fields cannot shift into
 * their neighbours.
 */
import { randomBytes as nodeRandomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { canonical, fromBase64Url, randomBytes, toBase64Url, toHex, utf8 } from "../../../../shared/wire/encoding.ts";

const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("utf8", () => {
  it("encodes multi-byte characters as UTF-8", () => {
    expect(Array.from(utf8("é€"))).toEqual([0xc3, 0xa9, 0xe2, 0x82, 0xac]);
    expect(utf8("").byteLength).toBe(0);
  });
});

describe("toHex", () => {
  it("writes two lowercase hex digits per byte, zero-padded", () => {
    expect(toHex(new Uint8Array([0x00, 0x0f, 0xa0, 0xff]))).toBe("000fa0ff");
    expect(toHex(new Uint8Array())).toBe("");
  });

  it("agrees with Buffer hex on random bytes", () => {
    const bytes = nodeRandomBytes(64);
    expect(toHex(new Uint8Array(bytes))).toBe(bytes.toString("hex"));
  });
});

describe("toBase64Url", () => {
  it("matches the RFC 4648 §10 test vectors in the URL-safe alphabet without padding", () => {
    const vectors: Array<[string, string]> = [
      ["", ""],
      ["f", "Zg"],
      ["fo", "Zm8"],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg"],
      ["fooba", "Zm9vYmE"],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [input, output] of vectors) expect(toBase64Url(utf8(input))).toBe(output);
  });

  it("uses - and _ instead of + and /", () => {
    // 0xfb 0xff 0xbf encodes as "+/+/" in standard base64.
    expect(toBase64Url(new Uint8Array([0xfb, 0xff, 0xbf]))).toBe("-_-_");
  });

  it("agrees with Buffer base64url for every length 0..40", () => {
    for (let n = 0; n <= 40; n++) {
      const bytes = nodeRandomBytes(n);
      expect(toBase64Url(new Uint8Array(bytes))).toBe(bytes.toString("base64url"));
    }
  });
});

describe("fromBase64Url", () => {
  it("round-trips random bytes of every length 0..40", () => {
    for (let n = 0; n <= 40; n++) {
      const bytes = new Uint8Array(nodeRandomBytes(n));
      expect(fromBase64Url(toBase64Url(bytes))).toEqual(bytes);
    }
  });

  it("decodes the URL-safe alphabet", () => {
    expect(Array.from(fromBase64Url("-_-_")!)).toEqual([0xfb, 0xff, 0xbf]);
  });

  it("rejects padding", () => {
    expect(fromBase64Url("Zg==")).toBeNull();
    expect(fromBase64Url("Zm8=")).toBeNull();
    expect(fromBase64Url("Zm9v=")).toBeNull();
  });

  it("rejects the standard alphabet", () => {
    expect(fromBase64Url("+/+/")).toBeNull();
  });

  it("rejects whitespace and other characters", () => {
    expect(fromBase64Url(" Zm9v")).toBeNull();
    expect(fromBase64Url("Zm9v\n")).toBeNull();
    expect(fromBase64Url("Zm 9v")).toBeNull();
    expect(fromBase64Url("Zm9v.")).toBeNull();
  });

  it("rejects an impossible length (4k+1 characters)", () => {
    expect(fromBase64Url("Z")).toBeNull();
    expect(fromBase64Url("Zm9vY")).toBeNull();
  });

  it("rejects non-zero trailing bits (a second spelling of the same bytes)", () => {
    // "Zg" is the canonical spelling of "f"; "Zh".."Zv" decode to the same byte with junk low bits.
    expect(dec(fromBase64Url("Zg")!)).toBe("f");
    for (const alt of ["Zh", "Zi", "Zv"]) expect(fromBase64Url(alt)).toBeNull();
    // "Zm8" is "fo"; "Zm9" has a non-zero trailing bit.
    expect(fromBase64Url("Zm9")).toBeNull();
  });

  it("gives exactly one accepted spelling per byte string (exhaustive over 2 characters)", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const seen = new Map<number, string>();
    for (const a of alphabet) {
      for (const b of alphabet) {
        const bytes = fromBase64Url(a + b);
        if (!bytes) continue;
        expect(bytes.byteLength).toBe(1);
        expect(seen.has(bytes[0]!)).toBe(false);
        seen.set(bytes[0]!, a + b);
      }
    }
    expect(seen.size).toBe(256);
  });

  it("decodes the empty string to no bytes", () => {
    expect(fromBase64Url("")?.byteLength).toBe(0);
  });
});

describe("canonical", () => {
  it("writes <UTF-8 byte length>:<value> for each field, in order", () => {
    expect(dec(canonical(["abc", "", 42]))).toBe("3:abc0:2:42");
  });

  it("counts UTF-8 bytes, not UTF-16 code units", () => {
    // "é" is 2 bytes, "€" is 3, "😀" is 4 (2 UTF-16 code units).
    expect(dec(canonical(["é", "€", "😀"]))).toBe("2:é3:€4:😀");
  });

  it("keeps fields from shifting into their neighbours", () => {
    // Naive concatenation makes these equal; the canonical encoding must not.
    expect(["ab", "c"].join("")).toBe(["a", "bc"].join(""));
    expect(canonical(["ab", "c"])).not.toEqual(canonical(["a", "bc"]));
    expect(canonical(["salt1", 6])).not.toEqual(canonical(["salt", 16]));
    expect(canonical(["a:", "b"])).not.toEqual(canonical(["a", ":b"]));
    // A field that looks like a length prefix cannot forge a second field.
    expect(canonical(["1:a"])).not.toEqual(canonical(["1", "a"]));
  });

  it("distinguishes the number of fields", () => {
    expect(canonical(["a", ""])).not.toEqual(canonical(["a"]));
  });

  it("refuses numbers that are not safe integers", () => {
    expect(() => canonical([1.5])).toThrow(TypeError);
    expect(() => canonical([Number.MAX_SAFE_INTEGER + 1])).toThrow(TypeError);
    expect(() => canonical([Number.NaN])).toThrow(TypeError);
    expect(() => canonical([Number.POSITIVE_INFINITY])).toThrow(TypeError);
    expect(dec(canonical([Number.MAX_SAFE_INTEGER]))).toBe(`16:${Number.MAX_SAFE_INTEGER}`);
  });
});

describe("randomBytes", () => {
  it("returns the requested number of bytes, different each call", () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    expect(a.byteLength).toBe(32);
    expect(b.byteLength).toBe(32);
    expect(toHex(a)).not.toBe(toHex(b));
    expect(randomBytes(0).byteLength).toBe(0);
  });
});
