/**
 * The dashboard's copy of uPlot (public/uplot/, served as Workers Static Assets) is the
 * installed package's file, byte for byte, with its license: an upgrade of `uplot` that is
 * not copied again fails here instead of drifting silently.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const read = (path: string) => readFile(ROOT + path);

describe("public/uplot", () => {
  it.each(["uPlot.iife.min.js", "uPlot.min.css"])("%s is byte-identical to node_modules/uplot/dist", async (name) => {
    const copy = await read(`public/uplot/${name}`);
    const installed = await read(`node_modules/uplot/dist/${name}`);
    expect(copy.equals(installed)).toBe(true);
  });

  it("carries uPlot's license and names the installed version", async () => {
    expect((await read("public/uplot/LICENSE")).equals(await read("node_modules/uplot/LICENSE"))).toBe(true);
    const { version } = JSON.parse((await read("node_modules/uplot/package.json")).toString()) as { version: string };
    expect(
      (await read("public/uplot/uPlot.iife.min.js")).toString().startsWith(`/*! https://github.com/leeoniya/uPlot (v${version}) */`),
    ).toBe(true);
    expect((await read("public/uplot/VERSION")).toString()).toContain(`uPlot ${version}`);
  });
});
