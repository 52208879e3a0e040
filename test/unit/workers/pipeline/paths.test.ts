/**
 * Paths as the gateway prices them (workers/pipeline/paths.ts): `normalizePath` reads a path
 * as an origin that decodes and resolves it does (decoded once, dot segments resolved after
 * decoding, slashes merged, lowercase); `pathProblem` names the spellings origins read
 * differently (an escaped `/` or `\`, a dot segment left after decoding, a malformed escape),
 * which the gateway refuses. Double encoding stays encoded.
 */
import { describe, expect, it } from "vitest";
import { normalizePath, pathProblem } from "../../../../workers/pipeline/paths.ts";

describe("normalizePath", () => {
  it("reads every spelling a decoding origin routes to the endpoint as the endpoint", () => {
    for (const path of [
      "/mcp",
      "/MCP",
      "/mcp/",
      "//mcp//",
      "/%6Dcp",
      "/%6d%63%70",
      "/x/../mcp",
      "/x/%2e%2e/mcp",
      "/x/%2E./mcp",
      "/mcp/./",
      "/./mcp",
      "/x/..%2Fmcp",
      "/a/b/../../mcp",
      "/../mcp",
    ]) {
      expect(normalizePath(path), path).toBe("/mcp");
    }
  });

  it("decodes once: a double-encoded dot or slash is a name, not a dot segment", () => {
    expect(normalizePath("/x/%252e%252e/mcp")).toBe("/x/%2e%2e/mcp");
    expect(normalizePath("/x/%252e%252e%252fmcp")).toBe("/x/%2e%2e%2fmcp");
  });

  it("keeps other paths apart, the root as /", () => {
    expect(normalizePath("/")).toBe("/");
    expect(normalizePath("")).toBe("/");
    expect(normalizePath("/mcpx")).toBe("/mcpx");
    expect(normalizePath("/x/mcp")).toBe("/x/mcp");
    expect(normalizePath("/mcp/..")).toBe("/");
    // Bytes that are not UTF-8: a replacement character, never the endpoint.
    expect(normalizePath("/mcp%ff")).toBe("/mcp\ufffd");
    // A malformed escape stays as sent.
    expect(normalizePath("/mcp%zz")).toBe("/mcp%zz");
  });
});

describe("pathProblem", () => {
  it("names each spelling origins read differently", () => {
    for (const path of ["/x/..%2Fmcp", "/x/..%2fmcp", "/mcp%2F", "/a%2Fb", "/x/..%5Cmcp", "/x%5c..%5cmcp"])
      expect(pathProblem(path), path).toMatch(/escaped/);
    for (const path of ["/x/%2e%2e/mcp", "/x/.%2E/mcp", "/mcp/%2e", "/x/../mcp", "/mcp/./"])
      expect(pathProblem(path), path).toMatch(/\. or \.\. segment/);
    for (const path of ["/mcp%", "/mcp%zz", "/mcp%2", "/%g0mcp"]) expect(pathProblem(path), path).toMatch(/malformed/);
  });

  it("passes every spelling with one reading: plain, escaped letters, double encoding, dots inside a name", () => {
    for (const path of [
      "/",
      "/mcp",
      "/MCP/",
      "//mcp",
      "/%6Dcp",
      "/x/%252e%252e%252fmcp",
      "/%252e%252e/mcp",
      "/files/a.b",
      "/x/...",
      "/x/..a",
      "/.well-known/oauth-protected-resource",
      "/mcp%ff",
    ]) {
      expect(pathProblem(path), path).toBeNull();
    }
  });
});
