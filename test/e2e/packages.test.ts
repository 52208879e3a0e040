/**
 * The publishable packages (packages/, names in packages/names.json) as a user gets them:
 * `npm pack` (its `prepack` builds from packages/<name>/src and shared/wire/), then
 * `npm install <tarball>` in an empty folder, outside this repository's node_modules.
 *  - each tarball holds exactly its compiled sources (the bridge's with a copy of the
 *    client's), shared/wire/ and the repository's LICENSE (MIT): no gateway code (keys,
 *    tokens, macaroons, policy, buckets); its manifest names the repository.
 *  - `tollbooth-client`: a script importing `withTollbooth` from the package name gets tool
 *    results through a real gateway whose bucket forces 402 challenges, under Node 20
 *    (/usr/bin/node) and Node 24 (node_modules/node); its `solvePow` runs on the worker pool
 *    (more than one thread on a multi-core machine: the pool's worker entry is found in the
 *    package), and in Chromium on module Web Workers.
 *  - `tollbooth-bridge`: its bin, driven by the SDK `Client` over `StdioClientTransport`:
 *    200 tool calls through forced challenges, every progress notification of a call 20 runs
 *    in a row (the message-order fix in packages/tollbooth-bridge/src/to-client.ts), an elicitation.
 * README's agent example runs as written from the installed tarball; README and
 * docs/agents.md tell users exactly these package names.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema, type Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { CHROMIUM_PATH, launchChromium } from "../helpers/browser.ts";
import { firstText } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NAMES = JSON.parse(await readFile(join(ROOT, "packages/names.json"), "utf8")) as { client: string; bridge: string; version: string };
const SDK_VERSION = (
  JSON.parse(await readFile(join(ROOT, "node_modules/@modelcontextprotocol/sdk/package.json"), "utf8")) as { version: string }
).version;
const NODE_20 = "/usr/bin/node";
const NODE_24 = join(ROOT, "node_modules/node/bin/node");
/** npm with the Node that runs the tests first on PATH (prepack runs `node packages/build.ts`). */
const NPM_ENV = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` };
const NPM_INSTALL = ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];
/**
 * 2 free units, then tokens of 3 credits from 10-bit challenges. Adaptive difficulty off and
 * the per-caller ceiling raised: 66 solves and ~270 requests in a few seconds would meet
 * both, which is not what this file is about
 * (test/unit/packages/tollbooth-client/resolver/with-tollbooth.429-to-solution.test.ts is).
 */
const POLICY = {
  bucket: { capacity: 2, refillPerSecond: 0.0001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 10, credits: 3, adaptive: { maxExtraBits: 0 } },
};

let origin: Origin;
let gateway: Gateway;
let work: string;
let clientDir: string;
let bridgeDir: string;

/**
 * README's command, `npm run pack:packages` (each package's `npm pack`, whose `prepack` builds),
 * then each tarball copied into `dest`; returns each tarball's path and the files it holds.
 */
async function packBoth(dest: string): Promise<Record<"client" | "bridge", { tarball: string; files: string[] }>> {
  await run("npm", ["run", "-s", "pack:packages"], { cwd: ROOT, env: NPM_ENV, maxBuffer: 16 * 1024 * 1024 });
  const one = async (name: string) => {
    const made = join(ROOT, "packages", `${name}-${NAMES.version}.tgz`);
    const tarball = join(dest, `${name}-${NAMES.version}.tgz`);
    await rename(made, tarball);
    const { stdout } = await run("tar", ["-tzf", tarball]);
    const files = stdout
      .split("\n")
      .filter((f) => f !== "")
      .map((f) => f.replace(/^package\//, ""))
      .sort();
    const manifest = JSON.parse((await run("tar", ["-xzOf", tarball, "package/package.json"])).stdout) as { name: string; version: string };
    expect(manifest).toMatchObject({ name, version: NAMES.version });
    return { tarball, files };
  };
  return { client: await one(NAMES.client), bridge: await one(NAMES.bridge) };
}

/** `module.js` and `module.d.ts` of each module under `dir` (dist/ mirrors the repository). */
const compiled = (dir: string, modules: string[]) => modules.flatMap((m) => [`dist/${dir}/${m}.d.ts`, `dist/${dir}/${m}.js`]);
/** What the client's entry imports: its sources, and shared/wire/ — nothing else of shared/. */
const CLIENT_FILES = [
  ...compiled("packages/tollbooth-client/src", ["errors", "index"]),
  ...compiled("packages/tollbooth-client/src/payers", ["index", "l402", "lightning-wallet", "payer", "pow", "x402"]),
  ...compiled("packages/tollbooth-client/src/resolver", ["call", "kept", "responses", "with-tollbooth"]),
  ...compiled("packages/tollbooth-client/src/solver", [
    "kernel",
    "midstate",
    "pool",
    "search",
    "sha256-pow.wasm",
    "sha256",
    "solve-pow",
    "worker",
  ]),
  ...compiled("shared/wire", ["auth-params", "encoding", "headers", "pow"]),
];
const BRIDGE_FILES = [
  ...compiled("packages/tollbooth-bridge/src", [
    "args",
    "bridge",
    "cli",
    "failures",
    "flags",
    "index",
    "log",
    "relay",
    "to-client",
    "upstream",
  ]),
  ...compiled("packages/tollbooth-bridge/src/payers", ["index", "l402", "payer", "x402"]),
  ...CLIENT_FILES,
];
let packed: Record<"client" | "bridge", string[]>;

/** An empty ESM project in `dir` with `specs` installed from tarballs / the npm cache. */
async function installInto(dir: string, specs: string[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await run("npm", [...NPM_INSTALL, ...specs], { cwd: dir, env: NPM_ENV, maxBuffer: 16 * 1024 * 1024 });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "tollbooth-packages-"));
  clientDir = join(work, "client-consumer");
  bridgeDir = join(work, "bridge-consumer");
  const stack = (async () => {
    origin = await startOrigin();
    gateway = await startGateway({ originUrl: origin.url, policy: POLICY });
  })();
  const { client, bridge } = await packBoth(work);
  packed = { client: client.files, bridge: bridge.files };
  const [clientTgz, bridgeTgz] = [client.tarball, bridge.tarball];
  await Promise.all([
    installInto(clientDir, [clientTgz, `@modelcontextprotocol/sdk@${SDK_VERSION}`]),
    installInto(bridgeDir, [bridgeTgz]),
    stack,
  ]);
}, 180_000);

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** What the consumer script prints. */
interface ScriptOutput {
  node: string;
  texts: string[];
  solves: { difficulty: number }[];
  pow: { threads?: number; nonce: string };
  /** A solve asked for 2 threads: the pool's workers start on any machine, one core too. */
  pow2: { threads?: number; nonce: string };
}

// A consumer's script: nothing of this repository, only the installed packages.
const SCRIPT = `
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { solvePow, withTollbooth } from "${NAMES.client}";

const [url, apiKey] = process.argv.slice(2);
const solves = [];
const transport = new StreamableHTTPClientTransport(new URL(url), {
  fetch: withTollbooth(fetch, { maxDifficulty: 16, onSolve: (e) => solves.push(e) }),
  requestInit: { headers: { "x-api-key": apiKey } },
});
const client = new Client({ name: "package-consumer", version: "1.0.0" });
await client.connect(transport);
const texts = [];
for (let i = 1; i <= 8; i++) {
  const result = await client.callTool({ name: "echo", arguments: { message: "pkg-" + i } });
  texts.push(result.content[0].text);
}
await transport.terminateSession().catch(() => {});
await client.close();
// 18 bits: solvePow's default goes to the worker pool (MULTI_THREAD_MIN_DIFFICULTY).
const pow = await solvePow("package-consumer-salt", 18);
const pow2 = await solvePow("package-consumer-salt-2", 18, { threads: 2 });
process.stdout.write(JSON.stringify({ node: process.version, texts, solves, pow, pow2 }));
`;

describe("the tarballs", () => {
  it(`${NAMES.client} holds exactly its compiled sources, shared/wire/ and the LICENSE: no gateway code`, () => {
    expect(packed.client).toEqual(["LICENSE", "README.md", ...CLIENT_FILES, "package.json"].sort());
  });
  it(`${NAMES.bridge} holds exactly its compiled sources, the client's, shared/wire/ and the LICENSE: no gateway code`, () => {
    expect(packed.bridge).toEqual(["LICENSE", "README.md", ...BRIDGE_FILES, "package.json"].sort());
  });
  it("each installed package carries the repository's MIT LICENSE and says where its source is", async () => {
    const license = await readFile(join(ROOT, "LICENSE"), "utf8");
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) 2026 tollbooth contributors\n/);
    for (const [dir, name] of [
      [clientDir, NAMES.client],
      [bridgeDir, NAMES.bridge],
    ] as const) {
      const installed = join(dir, "node_modules", name);
      expect(await readFile(join(installed, "LICENSE"), "utf8")).toBe(license);
      const manifest = JSON.parse(await readFile(join(installed, "package.json"), "utf8")) as Record<string, unknown>;
      expect(manifest).toMatchObject({
        license: "MIT",
        repository: { type: "git", url: "git+https://github.com/tollbooth-mcp/tollbooth.git", directory: `packages/${name}` },
        homepage: "https://github.com/tollbooth-mcp/tollbooth#readme",
      });
    }
  });
});

describe(`${NAMES.client}, installed from its tarball`, () => {
  for (const [label, node] of [
    ["Node 20", NODE_20],
    ["Node 24", NODE_24],
  ] as const) {
    it(`${label}: withTollbooth gets 8 tool results through forced 402s; solvePow runs on several worker threads`, async () => {
      await writeFile(join(clientDir, "consumer.mjs"), SCRIPT);
      origin.reset();
      const { stdout } = await run(node, ["consumer.mjs", `${gateway.url}/mcp`, `pkg-client-${label}`], {
        cwd: clientDir,
        timeout: 60_000,
      });
      const out = JSON.parse(stdout) as ScriptOutput;
      expect(out.node).toMatch(label === "Node 20" ? /^v20\./ : /^v24\./);
      expect(out.texts).toEqual(Array.from({ length: 8 }, (_, i) => `Echo: pkg-${i + 1}`));
      // Calls 1–2 free, 3–5, 6–8 each on a token from one 10-bit solve.
      expect(out.solves.map((s) => s.difficulty)).toEqual([10, 10]);
      expect(origin.counts()["tools/call:echo"]).toBe(8);
      // The pool's worker entry was found in the package: every processor searched (a
      // worker that cannot start makes the solver fall back to 1 thread).
      expect(out.pow.threads).toBe(availableParallelism());
      expect(out.pow.nonce).toMatch(/^[0-9]+$/);
      // Two workers asked for, two searched (whatever the number of cores): the pool really
      // started workers from the package (else the solve falls back to 1 thread).
      expect(out.pow2.threads).toBe(2);
      expect(out.pow2.nonce).toMatch(/^[0-9]+$/);
    });
  }
});

describe("README's agent example", () => {
  it("runs as written from the installed tarball (Node 20): 15 echoes, each 402 solved and reported by onSolve", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const example = /Client\.[\s\S]*?save this as `agent\.mjs`:\n\n```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toContain(`from "${NAMES.client}"`);
    await writeFile(join(clientDir, "agent.mjs"), example!);
    origin.reset();
    const { stdout, stderr } = await run(NODE_20, ["agent.mjs", `${gateway.url}/mcp`], { cwd: clientDir, timeout: 60_000 });
    expect(stdout.trim().split("\n")).toEqual(Array.from({ length: 15 }, (_, i) => `Echo: call ${i + 1}`));
    expect(origin.counts()["tools/call:echo"]).toBe(15);
    // This file's caller (127.0.0.1) spent its 2 free units already: a token of 3 credits per 10-bit solve.
    expect(stderr.match(/^402 → solved 10 bits in \d+ ms$/gm)?.length, stderr).toBe(5);
  });
});

describe(`${NAMES.client} in a browser`, () => {
  it.skipIf(!existsSync(CHROMIUM_PATH))(
    "Chromium: solvePow of the installed package runs on module Web Workers, one per processor",
    async () => {
      // The installed package's dist/, served as is (cross-origin isolated: SharedArrayBuffer).
      // The solver's modules import only relative paths; the full entry needs an import map
      // or a bundler for its dependencies (@x402/*).
      const dist = join(clientDir, "node_modules", NAMES.client, "dist");
      const server = http.createServer((req, res) => {
        const path = normalize(new URL(req.url ?? "/", "http://localhost").pathname);
        const isolation = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };
        if (path === "/")
          return void res.writeHead(200, { ...isolation, "content-type": "text/html" }).end("<!doctype html><title>solver</title>");
        readFile(join(dist, path)).then(
          (body) => res.writeHead(200, { ...isolation, "content-type": "text/javascript" }).end(body),
          () => res.writeHead(404).end(),
        );
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
        // A string, not a function: Vitest rewrites import() in test code.
        const out = (await page.evaluate(`(async () => {
        const { solvePow } = await import("/packages/tollbooth-client/src/solver/solve-pow.js");
        const solution = await solvePow("browser-salt", 18);
        const two = await solvePow("browser-salt-2", 18, { threads: 2 });
        return { ...solution, two, cores: navigator.hardwareConcurrency, isolated: crossOriginIsolated };
      })()`)) as { nonce: string; threads?: number; two: { nonce: string; threads?: number }; cores: number; isolated: boolean };
        expect(out.isolated).toBe(true);
        expect(out.threads).toBe(out.cores);
        expect(out.nonce).toMatch(/^[0-9]+$/);
        // Two Web Workers asked for, two searched, on any number of cores.
        expect(out.two.threads).toBe(2);
        expect(out.two.nonce).toMatch(/^[0-9]+$/);
      } finally {
        await browser.close();
        server.close();
      }
    },
  );
});

describe(`${NAMES.bridge}, installed from its tarball, driven by the SDK stdio client`, () => {
  it("200 tool calls through forced 402s, all 4 progress notifications 20 runs in a row, an elicitation", async () => {
    origin.reset();
    // The bin as npx runs it (its #! line), under Node 20: /usr/bin first on PATH.
    const transport = new StdioClientTransport({
      command: join(bridgeDir, "node_modules/.bin", NAMES.bridge),
      args: [`${gateway.url}/mcp`, "--header", "x-api-key: pkg-bridge", "--max-difficulty", "16"],
      env: { PATH: `/usr/bin:/bin`, HOME: process.env.HOME ?? "/tmp" },
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const client = new Client({ name: "pkg-bridge-e2e", version: "1.0.0" }, { capabilities: { elicitation: {} } });
    const errors: Error[] = [];
    client.onerror = (err) => errors.push(err);
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: "Grace Hopper" } }));
    await client.connect(transport);
    try {
      for (let i = 1; i <= 200; i++) {
        expect(firstText(await client.callTool({ name: "echo", arguments: { message: `b-${i}` } }))).toBe(`Echo: b-${i}`);
      }
      // Calls 1–2 free, then one 10-bit solve per 3 calls: 198 / 3.
      expect(stderr.match(/solved challenge: 10 bits in \d+ ms/g) ?? []).toHaveLength(66);
      expect(origin.counts()["tools/call:echo"]).toBe(200);

      for (let run = 1; run <= 20; run++) {
        const progress: Progress[] = [];
        const result = await client.callTool(
          { name: "trigger-long-running-operation", arguments: { duration: 0.08, steps: 4 } },
          undefined,
          { onprogress: (p) => progress.push(p) },
        );
        expect(firstText(result)).toContain("Long running operation completed");
        expect({ run, progress: progress.map((p) => [p.progress, p.total]) }).toEqual({
          run,
          progress: [
            [1, 4],
            [2, 4],
            [3, 4],
            [4, 4],
          ],
        });
      }

      const elicited = await client.callTool({ name: "trigger-elicitation-request", arguments: {} });
      expect(JSON.stringify(elicited)).toContain("Grace Hopper");
    } catch (err) {
      throw new Error(`${String(err)}\nbridge stderr (last 3000 chars):\n${stderr.slice(-3000)}`);
    } finally {
      await client.close();
    }
    // No progress notification arrived after its call's response ("unknown token").
    expect(errors).toEqual([]);
    expect(origin.counts()["tools/call:trigger-long-running-operation"]).toBe(20);
    expect(stderr).toMatch(/^\[tollbooth-bridge\] relaying stdio to /m);
  });
});

describe("README and docs/agents.md", () => {
  it("tell users the package names of packages/names.json", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const agents = await readFile(join(ROOT, "docs/agents.md"), "utf8");
    expect(readme).toContain(`packages/${NAMES.client}-${NAMES.version}.tgz`);
    expect(readme).toContain(`packages/${NAMES.bridge}-${NAMES.version}.tgz`);
    expect(readme).toContain(`"command": "${NAMES.bridge}"`);
    expect(readme).toContain(`npx -y ${NAMES.bridge} `);
    expect(readme).toContain(`import { withTollbooth } from "${NAMES.client}";`);
    expect(agents).toContain(`"args": ["-y", "${NAMES.bridge}"`);
    // No import of the agent side by a repository path in instructions for users.
    expect(readme).not.toMatch(/import \{[^}]*\} from "\.\/packages\//);
    for (const name of [NAMES.client, NAMES.bridge]) {
      const manifest = JSON.parse(await readFile(join(ROOT, "packages", name, "package.json"), "utf8")) as { name: string };
      expect(manifest.name).toBe(name);
    }
  });
});
