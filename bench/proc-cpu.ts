/**
 * CPU time of the processes that serve a benchmark path, read from Linux's own counters:
 * `/proc/<pid>/stat` fields 14 and 15 (`utime` + `stime`, every thread of the process, in
 * clock ticks of `getconf CLK_TCK`, usually 100 per second), so a figure is the CPU the
 * kernel charged to those processes, whatever else runs on the machine.
 *
 * - `wrangler dev` (scripts/stack/gateway.ts) is a node process (`wrangler.js`, then its
 *   `cli.js` child) with two workerd children: the one started with `--inspector-addr` runs
 *   the Worker (Miniflare's entry worker, the user Worker, its Durable Objects and
 *   bindings); the other is wrangler's proxy in front of it (it owns the public port).
 *   {@link wranglerProcesses} finds them by walking the children of the wrangler process
 *   whose command line has `--port <port>`.
 * - Miniflare started in this process (bench/miniflare-worker.ts) is one workerd child of
 *   this process: {@link childWorkerd}.
 * Linux only (throws elsewhere).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of `utime`/`stime` (`getconf CLK_TCK`; 100 when getconf is missing). */
export const CLOCK_TICKS: number = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** The processes behind one path, by role (pids). */
export interface ProcessSet {
  /** workerd running the Worker (and its Durable Objects): what Cloudflare would bill as CPU. */
  worker: number[];
  /** workerd of wrangler's own proxy in front of it (`wrangler dev` only; empty under Miniflare). */
  proxy: number[];
  /** wrangler's node processes (inspector, console forwarding, dev server; empty under Miniflare). */
  node: number[];
}

/** CPU time of a {@link ProcessSet}, milliseconds since each process started, by role. */
export interface CpuSample {
  worker: number;
  proxy: number;
  node: number;
}

/** One line of `/proc/<pid>/stat`, parsed. */
interface Stat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, clock ticks. */
  ticks: number;
}

/** `/proc/<pid>/stat`, or null when the process is gone. */
function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // comm is in parentheses and may hold spaces or parentheses: the fields start after the last ")".
  const close = text.lastIndexOf(")");
  const comm = text.slice(text.indexOf("(") + 1, close);
  const f = text.slice(close + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { pid, ppid: Number(f[1]), comm, ticks: Number(f[11]) + Number(f[12]) };
}

/** Every process of the machine now. */
function allProcesses(): Stat[] {
  const out: Stat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/** Command line of a process (arguments joined by spaces), or "" when gone. */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
}

/** `root` and every process below it. */
function treeOf(root: number, all: Stat[]): Stat[] {
  const byParent = new Map<number, Stat[]>();
  for (const s of all) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), s]);
  const self = all.find((s) => s.pid === root);
  const out: Stat[] = self ? [self] : [];
  for (let i = 0; i < out.length; i++) out.push(...(byParent.get(out[i]!.pid) ?? []));
  return out;
}

/**
 * The processes of the `wrangler dev` that listens on `port` (started by
 * scripts/stack/gateway.ts with `--port <port>`).
 * @throws Error when no such wrangler process, or no workerd below it, is found
 */
export function wranglerProcesses(port: number): ProcessSet {
  const all = allProcesses();
  const flag = ` --port ${port} `;
  const matching = all.filter((s) => {
    const cmd = `${cmdline(s.pid)} `;
    return cmd.includes("wrangler") && cmd.includes(" dev ") && cmd.includes(flag);
  });
  const pids = new Set(matching.map((s) => s.pid));
  // The top one: wrangler.js, whose child cli.js has the same arguments.
  const root = matching.find((s) => !pids.has(s.ppid));
  if (!root) throw new Error(`no wrangler dev process with --port ${port}`);
  const set: ProcessSet = { worker: [], proxy: [], node: [] };
  for (const s of treeOf(root.pid, all)) {
    if (s.comm === "workerd") (cmdline(s.pid).includes("--inspector-addr") ? set.worker : set.proxy).push(s.pid);
    else set.node.push(s.pid);
  }
  if (set.worker.length === 0)
    throw new Error(
      `wrangler dev on port ${port}: no workerd with --inspector-addr below pid ${root.pid} (found workerd ${set.proxy.join(", ") || "none"})`,
    );
  return set;
}

/** pids of the workerd processes that are children of `parent` (default: this process). */
export function childWorkerd(parent = process.pid): number[] {
  return allProcesses()
    .filter((s) => s.ppid === parent && s.comm === "workerd")
    .map((s) => s.pid);
}

/**
 * CPU time (user + system) of processes, milliseconds.
 * @throws Error naming the pid when one of them is gone (a crashed runtime must not read as "no CPU")
 */
export function cpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const s = readStat(pid);
    if (!s) throw new Error(`process ${pid} is gone: its CPU time cannot be read`);
    ticks += s.ticks;
  }
  return (ticks * 1000) / CLOCK_TICKS;
}

/** CPU time of each role of a {@link ProcessSet}, milliseconds. */
export function sampleCpu(set: ProcessSet): CpuSample {
  return { worker: cpuMs(set.worker), proxy: cpuMs(set.proxy), node: cpuMs(set.node) };
}
