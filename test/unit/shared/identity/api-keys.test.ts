/**
 * `matchKeyTarget` (shared/identity/api-keys.ts): which stored key a revocation target names,
 * for the admin API and `npm run keys -- revoke` alike. A whole hash first; then exact names
 * and hash prefixes (12–63 hex) together, which must name exactly one key: a key named like
 * another key's hash prefix, and a prefix shared by several keys, revoke nothing.
 */
import { describe, expect, it } from "vitest";
import { type KeyEntry, matchKeyTarget } from "../../../../shared/identity/api-keys.ts";

const A = `cc3f09d70afb${"1".repeat(52)}`;
const B = `5c02dd7d8bd3${"2".repeat(52)}`;
const C = `cc3f09d70afb0${"3".repeat(51)}`;

describe("matchKeyTarget", () => {
  it("a name equal to another key's hash prefix is ambiguous (it does not revoke the named key)", () => {
    const entries: KeyEntry[] = [
      { sha256: A, name: "ci-bot" },
      { sha256: B, name: "cc3f09d70afb" },
    ];
    expect(matchKeyTarget(entries, "cc3f09d70afb")).toEqual({
      kind: "ambiguous",
      matches: [
        { name: "ci-bot", sha256Prefix: "cc3f09d70afb", matchedBy: "hash prefix" },
        { name: "cc3f09d70afb", sha256Prefix: "5c02dd7d8bd3", matchedBy: "name" },
      ].sort((x, y) => (x.sha256Prefix < y.sha256Prefix ? -1 : 1)),
    });
    // More of the hash names A alone; the whole hash too.
    expect(matchKeyTarget(entries, A.slice(0, 13))).toMatchObject({ kind: "one", sha256: A, match: { matchedBy: "hash prefix" } });
    expect(matchKeyTarget(entries, A)).toMatchObject({ kind: "one", sha256: A, match: { matchedBy: "hash" } });
  });

  it("a prefix of several hashes, or a name of several keys, is ambiguous; a key matched both ways is one match", () => {
    const entries: KeyEntry[] = [
      { sha256: A, name: "a" },
      { sha256: C, name: "c" },
      { sha256: B, name: "b" },
    ];
    expect(matchKeyTarget(entries, "cc3f09d70afb")).toEqual({
      kind: "ambiguous",
      matches: [
        { name: "c", sha256Prefix: C.slice(0, 12), matchedBy: "hash prefix" },
        { name: "a", sha256Prefix: A.slice(0, 12), matchedBy: "hash prefix" },
      ],
    });
    expect(matchKeyTarget([...entries, { sha256: "f".repeat(64), name: "a" }], "a")).toMatchObject({
      kind: "ambiguous",
      matches: [{ matchedBy: "name" }, { matchedBy: "name" }],
    });
    // A key named its own hash prefix: one key.
    expect(matchKeyTarget([{ sha256: B, name: "5c02dd7d8bd3" }], "5c02dd7d8bd3")).toMatchObject({
      kind: "one",
      sha256: B,
      match: { matchedBy: "name" },
    });
  });

  it("a whole hash wins over a key named with it; a name wins alone; short, upper-case or unknown targets match nothing", () => {
    const entries: KeyEntry[] = [
      { sha256: A, name: "a" },
      { sha256: B, name: A },
      { sha256: C, name: null },
    ];
    expect(matchKeyTarget(entries, A)).toMatchObject({ kind: "one", sha256: A, match: { matchedBy: "hash" } });
    expect(matchKeyTarget(entries.slice(1), A)).toMatchObject({ kind: "one", sha256: B, match: { matchedBy: "name" } });
    expect(matchKeyTarget(entries, "a")).toMatchObject({
      kind: "one",
      sha256: A,
      match: { name: "a", sha256Prefix: A.slice(0, 12), matchedBy: "name" },
    });
    for (const target of ["cc3f09d70af", "CC3F09D70AFB1", "nobody", "?", ""])
      expect(matchKeyTarget(entries, target)).toEqual({ kind: "none" });
    // An entry whose record is unreadable (name null) is found by its hash only.
    expect(matchKeyTarget(entries, C.slice(0, 13))).toMatchObject({ kind: "one", sha256: C, match: { name: null } });
  });
});
