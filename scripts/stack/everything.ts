/**
 * Runs the real `@modelcontextprotocol/server-everything` MCP server (Streamable HTTP
 * transport, `/mcp`) on 127.0.0.1, for `npm start`, the tests and the benchmarks.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { freePort, OutputTail } from "./ports.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SERVER_ENTRY = `${ROOT}node_modules/@modelcontextprotocol/server-everything/dist/index.js`;
const LOOPBACK_PRELOAD = pathToFileURL(`${ROOT}scripts/loopback-only.mjs`).href;
const READY_TIMEOUT_MS = 20_000;

/** A running server-everything. */
export interface Everything {
  /** Base URL, e.g. `http://127.0.0.1:3001`; MCP lives at `${url}/mcp`. */
  url: string;
  port: number;
  /** Its captured stdout + stderr (last 64 KiB). */
  output(): string;
  /** SIGTERM, SIGKILL after 3 s; resolves once it has exited. */
  close(): Promise<void>;
}

/**
 * Spawn server-everything (`streamableHttp`, loopback only, node = process.execPath)
 * and resolve once it logged "listening on port".
 * @param port TCP port (default: a free one)
 * @throws Error quoting its output when it exits early or is not listening within 20 s
 */
export async function startEverything(port?: number): Promise<Everything> {
  const listenPort = port ?? (await freePort());
  const output = new OutputTail();
  const child = spawn(process.execPath, ["--import", LOOPBACK_PRELOAD, SERVER_ENTRY, "streamableHttp"], {
    env: { ...process.env, PORT: String(listenPort) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  // Always drain both pipes (server-everything logs every request to stdout).
  child.stdout!.on("data", (c) => output.push(c));
  child.stderr!.on("data", (c) => output.push(c));
  try {
    await waitForListening(child, output);
  } catch (err) {
    await killChild(child);
    throw err;
  }
  return { url: `http://127.0.0.1:${listenPort}`, port: listenPort, output: () => output.toString(), close: () => killChild(child) };
}

/** Resolves when the child has logged "listening on port"; rejects on exit or timeout. */
function waitForListening(child: ChildProcess, output: OutputTail): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      child.stderr!.off("data", onData);
      child.off("exit", onExit);
      err ? reject(err) : resolve();
    };
    const onData = () => output.toString().includes("listening on port") && done();
    const onExit = (code: number | null) => done(new Error(`server-everything exited early (code ${code}):\n${output}`));
    const timer = setTimeout(
      () => done(new Error(`server-everything not listening after ${READY_TIMEOUT_MS} ms:\n${output}`)),
      READY_TIMEOUT_MS,
    );
    child.stderr!.on("data", onData);
    child.on("exit", onExit);
  });
}

/** SIGTERM, then SIGKILL after 3 s; resolves once the child has exited. */
async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}
