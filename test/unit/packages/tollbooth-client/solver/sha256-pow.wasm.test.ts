/**
 * The committed kernel bytes (packages/tollbooth-client/src/solver/sha256-pow.wasm.ts) are what
 * `npm run build:wasm` assembles from the committed .wat sources today, so the two cannot drift
 * apart.
 */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { SCALAR_WASM_BASE64, SIMD_WASM_BASE64 } from "../../../../../packages/tollbooth-client/src/solver/sha256-pow.wasm.ts";
import { renderWasmModule, WASM_MODULE_URL } from "../../../../../scripts/build-wasm.ts";

describe("packages/tollbooth-client/src/solver/sha256-pow.wasm.ts", () => {
  it("is exactly what the .wat sources assemble to", async () => {
    expect(await readFile(WASM_MODULE_URL, "utf8")).toBe(await renderWasmModule());
  });

  it("holds valid modules (the SIMD one only where SIMD is)", () => {
    expect(WebAssembly.validate(Buffer.from(SCALAR_WASM_BASE64, "base64"))).toBe(true);
    expect(WebAssembly.validate(Buffer.from(SIMD_WASM_BASE64, "base64"))).toBe(true);
  });
});
