/**
 * `npm start` names what is wrong, at once: an `ORIGIN_URL` without a scheme, ending in `/mcp`,
 * or where nothing listens is reported before anything waits on wrangler (the process exits 1
 * in under 3 s: before this, each was found only after the 30 s readiness timeout, or never); a
 * gateway that refuses its configuration (`500 misconfigured` on its first answer) is reported
 * with the Worker's message, not after the timeout; and it stops what it started. A right
 * `ORIGIN_URL` (README's "front your own origin") is the origin the gateway fronts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startEverything } from "../../scripts/stack/everything.ts";
import { freePort } from "../../scripts/stack/ports.ts";
import { connect, firstText } from "../helpers/mcp.ts";
import { type NpmStart, npmStart } from "../helpers/npm-start.ts";

/** Well under the readiness timeout (30 s) each mistake used to wait for; covers npm's and Node's start-up under load. */
const FAST_MS = 3_000;
const runs: NpmStart[] = [];
const state = mkdtempSync(join(tmpdir(), "tollbooth-start-errors-"));
afterAll(async () => {
  await Promise.all(runs.map((r) => r.stop()));
  rmSync(state, { recursive: true, force: true });
});
const start = (env: Record<string, string>, args: string[] = []) => {
  const run = npmStart(env, args);
  runs.push(run);
  return run;
};
/** Whether something accepts connections on 127.0.0.1:port. */
const listening = (port: number) =>
  fetch(`http://127.0.0.1:${port}/`).then(
    () => true,
    () => false,
  );

describe("npm start: a wrong ORIGIN_URL is named before anything starts", () => {
  it("without a scheme: 'did you mean ORIGIN_URL=http://…'", async () => {
    const gatewayPort = await freePort();
    const run = start({ ORIGIN_URL: "127.0.0.1:3001", GATEWAY_PORT: String(gatewayPort) });
    const { code, ms } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toContain(
      'npm start: `ORIGIN_URL` is the origin\'s base URL, with its scheme: got "127.0.0.1:3001"; did you mean ORIGIN_URL=http://127.0.0.1:3001? (from the environment)',
    );
    expect(ms).toBeLessThan(FAST_MS);
    expect(await listening(gatewayPort)).toBe(false);
  });

  it("ending in /mcp: 'ORIGIN_URL is the origin's base URL, without /mcp'", async () => {
    const run = start({ ORIGIN_URL: "http://127.0.0.1:3001/mcp", GATEWAY_PORT: String(await freePort()) });
    const { code, ms } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toContain(
      "npm start: `ORIGIN_URL` is the origin's base URL, without `/mcp`: the gateway appends each request's path, so a client's /mcp would reach http://127.0.0.1:3001/mcp/mcp. Use ORIGIN_URL=http://127.0.0.1:3001",
    );
    expect(ms).toBeLessThan(FAST_MS);
  });

  it("with nothing listening there: 'cannot reach the origin … connection refused'", async () => {
    const port = await freePort();
    const run = start({ ORIGIN_URL: `http://127.0.0.1:${port}`, GATEWAY_PORT: String(await freePort()) });
    const { code, ms } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toContain(
      `npm start: cannot reach the origin at http://127.0.0.1:${port} (ORIGIN_URL): connection refused: nothing listens on 127.0.0.1:${port}. Start your MCP server first, or leave ORIGIN_URL unset to run the bundled server-everything.`,
    );
    expect(ms).toBeLessThan(FAST_MS);
  });

  it("a route's origin likewise, named by its route", async () => {
    const routes = JSON.stringify([{ name: "search", match: { path: "/search" }, origin: "http://127.0.0.1:3001/mcp/" }]);
    const run = start({ TOLLBOOTH_ROUTES: routes, GATEWAY_PORT: String(await freePort()) });
    const { code, ms } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toMatch(
      /^npm start: TOLLBOOTH_ROUTES\[0\] \("search"\)\.origin is the origin's base URL, without `\/mcp`: .* Use http:\/\/127\.0\.0\.1:3001/m,
    );
    expect(ms).toBeLessThan(FAST_MS);
  });
});

describe("npm start: a gateway that refuses its configuration", () => {
  it("is reported at its first answer, with the Worker's message and where the setting came from, and nothing is left running", async () => {
    const [gatewayPort, originPort] = [await freePort(), await freePort()];
    const run = start({ TOLLBOOTH_ADMIN_TOKEN: "too-short", GATEWAY_PORT: String(gatewayPort), ORIGIN_PORT: String(originPort) }, [
      "--persist-to",
      state,
    ]);
    await run.waitFor(/^gateway: {2}starting wrangler dev/m);
    const { code } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toMatch(
      /^npm start: the gateway refuses its configuration: TOLLBOOTH_ADMIN_TOKEN .*\(TOLLBOOTH_ADMIN_TOKEN is set in the environment\)$/m,
    );
    // Not the readiness timeout's message: it did not wait 30 s for a gateway that answers.
    expect(run.stderr()).not.toMatch(/not ready .* after 30000 ms/);
    expect(await listening(gatewayPort)).toBe(false);
    expect(await listening(originPort)).toBe(false);
  });
});

describe("npm start: bad usage and a busy port", () => {
  it("names the gateway port in use", async () => {
    const port = await freePort();
    const { createServer } = await import("node:net");
    const server = createServer().listen(port, "127.0.0.1");
    try {
      const run = start({ GATEWAY_PORT: String(port), ORIGIN_URL: "http://127.0.0.1:3001" });
      const { code } = await run.exited;
      expect(code).toBe(1);
      expect(run.stderr()).toContain(
        `npm start: port ${port} on 127.0.0.1 is in use (another npm start?): stop it, or choose another with GATEWAY_PORT=…`,
      );
    } finally {
      server.close();
    }
  });

  it("refuses an unknown option with the usage", async () => {
    const run = start({}, ["--persist", "x"]);
    const { code } = await run.exited;
    expect(code).toBe(2);
    expect(run.stderr()).toMatch(/npm start: Unknown option '--persist'.*\nusage: npm start \[-- --persist-to <dir>\] \[-- --json\]/s);
  });
});

describe("npm start: a right ORIGIN_URL", () => {
  it("fronts that origin: README's `ORIGIN_URL=http://127.0.0.1:<port> npm start`, echo through the SDK client", async () => {
    const origin = await startEverything();
    try {
      const gatewayPort = await freePort();
      const run = start({ ORIGIN_URL: origin.url, GATEWAY_PORT: String(gatewayPort) }, ["--persist-to", join(state, "right")]);
      await run.waitFor(/^time {2,}caller/m, 60_000);
      expect(run.stdout()).toContain(origin.url);
      const mcp = await connect(`http://127.0.0.1:${gatewayPort}/mcp`);
      try {
        expect(firstText(await mcp.client.callTool({ name: "echo", arguments: { message: "own origin" } }))).toBe("Echo: own origin");
      } finally {
        await mcp.close(true);
      }
      // The session was opened at the origin named, not at a bundled one.
      expect(origin.output()).toMatch(/^Session initialized with ID: /m);
    } finally {
      await origin.close();
    }
  });
});
