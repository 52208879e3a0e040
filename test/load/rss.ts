/**
 * Memory of the gateway's `workerd` processes, read from Linux `/proc` (proc(5)).
 * `wrangler dev` (spawned by scripts/stack/gateway.ts) runs the Worker in `workerd`
 * child processes; they are found in the process tree under the given root pid.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Fields of /proc/<pid>/status, or null when the process is gone. */
function status(pid: number): Map<string, string> | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    return new Map(text.split("\n").map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]));
  } catch {
    return null;
  }
}

/**
 * Pids of every process below `root` in the process tree (children, grandchildren, …).
 * @param root a pid, e.g. `process.pid`
 */
export function descendants(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(status(Number(entry))?.get("PPid"));
    if (Number.isInteger(ppid)) parentOf.set(Number(entry), ppid);
  }
  const found: number[] = [];
  let frontier = [root];
  while (frontier.length > 0) {
    const next: number[] = [];
    for (const [pid, ppid] of parentOf) if (frontier.includes(ppid)) next.push(pid);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/**
 * Pids of the `workerd` processes of the `wrangler dev` serving `url`: the descendants of
 * the process below `root` whose command line has `--port <url's port>`.
 * @param root a pid above the `wrangler dev` process, e.g. `process.pid`
 * @param url the Worker's base URL, e.g. `http://127.0.0.1:8787`
 * @throws Error when there is no such `wrangler dev` or it has no workerd
 */
export function workerdPids(root: number, url: string): number[] {
  const port = new URL(url).port;
  const wrangler = descendants(root).find((pid) => {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return args.some((a, i) => a === "--port" && args[i + 1] === port) && args.includes("dev");
    } catch {
      return false;
    }
  });
  if (wrangler === undefined) throw new Error(`no wrangler dev --port ${port} below pid ${root}`);
  const pids = descendants(wrangler).filter((pid) => status(pid)?.get("Name") === "workerd");
  if (pids.length === 0) throw new Error(`no workerd process below wrangler dev (pid ${wrangler})`);
  return pids;
}

/**
 * Resident set size (`VmRSS`) summed over `pids`, in KiB.
 * @throws Error when one of them has exited
 */
export function rssKiB(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    const value = status(pid)?.get("VmRSS");
    if (value === undefined) throw new Error(`process ${pid} has exited`);
    total += parseInt(value, 10); // "123456 kB"
  }
  return total;
}
