/**
 * Runs the real `npm start` (scripts/start.ts through npm, as an operator types it) for the
 * e2e tests, with only the environment a test gives (nothing of the test runner's own:
 * VITEST*, NODE_ENV, and no tollbooth setting unless given), in its own process group.
 *
 *   const run = npmStart({ GATEWAY_PORT: "8799", TOLLBOOTH_ADMIN_TOKEN: "…" }, ["--persist-to", dir]);
 *   await run.waitFor(/^try: /m);
 *   await run.stop();
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A running `npm start`. */
export interface NpmStart {
  /** Everything it printed on stdout / stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with its exit code (null: a signal) and the milliseconds from spawn to exit. */
  exited: Promise<{ code: number | null; ms: number }>;
  /**
   * Resolves with the milliseconds from spawn when stdout + stderr match `pattern`; rejects when
   * the process exits first or after `timeoutMs`, quoting what it printed.
   */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<number>;
  /** SIGTERM to its process group (npm start's own stop: the gateway and the origin), SIGKILL after 15 s; resolves once every process of the group is gone. */
  stop(): Promise<void>;
}

/**
 * Spawn `npm start [-- <args>]` in the repository with `env` (plus PATH with node_modules/.bin
 * first, HOME).
 */
export function npmStart(env: Record<string, string>, args: string[] = []): NpmStart {
  const started = performance.now();
  const child = spawn("npm", ["start", ...(args.length ? ["--", ...args] : [])], {
    cwd: ROOT,
    env: {
      PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
      HOME: process.env.HOME,
      ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
      ...env,
    },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  child.stdout!.on("data", (c: Buffer) => {
    out += c.toString("utf8");
    for (const l of listeners) l();
  });
  child.stderr!.on("data", (c: Buffer) => {
    err += c.toString("utf8");
    for (const l of listeners) l();
  });
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) =>
    child.once("exit", (code) => resolve({ code, ms: performance.now() - started })),
  );
  let done = false;
  void exited.then(() => {
    done = true;
    for (const l of listeners) l();
  });
  const waitFor = (pattern: RegExp, timeoutMs = 90_000) =>
    new Promise<number>((resolve, reject) => {
      const check = () => {
        if (pattern.test(out + err)) finish(() => resolve(performance.now() - started));
        else if (done) finish(() => reject(new Error(`npm start exited before printing ${pattern}:\n${out}\n${err}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`npm start did not print ${pattern} within ${timeoutMs} ms:\n${out}\n${err}`))),
        timeoutMs,
      );
      const finish = (f: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        f();
      };
      listeners.add(check);
      check();
    });
  const stop = async () => {
    if (done) return;
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, 15_000);
    await exited;
    // npm may exit before its script has finished stopping: wait for the whole group.
    const alive = () => {
      try {
        process.kill(-child.pid!, 0);
        return true;
      } catch {
        return false;
      }
    };
    while (alive()) await new Promise((r) => setTimeout(r, 50));
    clearTimeout(timer);
  };
  return { stdout: () => out, stderr: () => err, exited, waitFor, stop };
}
