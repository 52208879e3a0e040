/**
 * `prometheusText(snapshot)`: the `Stats` snapshot's monotonic totals in the Prometheus text
 * exposition format 0.0.4 (served as `Content-Type: text/plain; version=0.0.4`):
 * one `# HELP` and `# TYPE` per metric family, counters named `tollbooth_<name>_total`, and
 * the request latency as the histogram `tollbooth_request_duration_seconds`
 * (`_bucket{le="…"}` cumulative, `le="+Inf"` last, then `_sum`, the requests' latencies
 * added up in seconds, and `_count`, equal to the `+Inf` bucket). Each line ends with `\n`,
 * the text too.
 */
import { COUNTER_HELP, LATENCY_SUM_KEY } from "./counters.ts";
import { LATENCY_BUCKETS_MS, type StatsSnapshot } from "./types.ts";

/** Prefix of every metric name. */
export const METRIC_PREFIX = "tollbooth_";

/** A sample value as the format writes it (integers without a fraction; `+Inf`, `-Inf`, `NaN`). */
function value(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

/** Escape `# HELP` text (backslash and newline). */
const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

/**
 * The snapshot's totals and latency histogram as Prometheus text 0.0.4. Counter keys of
 * `snapshot.totals` (`name{labels}`) are grouped by name, families in name order; a name
 * missing from `COUNTER_HELP` gets a generic help line; `LATENCY_SUM_KEY` is the histogram's
 * `_sum`, not a family. Pure: no clock, no I/O.
 */
export function prometheusText(snapshot: StatsSnapshot): string {
  const families = new Map<string, string[]>();
  for (const [key, n] of Object.entries(snapshot.totals)) {
    const brace = key.indexOf("{");
    const name = brace === -1 ? key : key.slice(0, brace);
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name) || name === LATENCY_SUM_KEY) continue;
    const list = families.get(name) ?? [];
    list.push(`${METRIC_PREFIX}${key} ${value(n)}`);
    families.set(name, list);
  }
  // Families the gateway always has, present at 0 before the first request.
  if (!families.has("requests_total")) families.set("requests_total", []);
  const lines: string[] = [];
  for (const name of [...families.keys()].sort()) {
    const full = METRIC_PREFIX + name;
    lines.push(`# HELP ${full} ${escapeHelp(COUNTER_HELP[name]?.help ?? `tollbooth counter ${name}.`)}`);
    lines.push(`# TYPE ${full} counter`);
    lines.push(...families.get(name)!.sort());
  }
  const hist = `${METRIC_PREFIX}request_duration_seconds`;
  lines.push(`# HELP ${hist} Time from a request's arrival to its response headers (the origin's time included), seconds.`);
  lines.push(`# TYPE ${hist} histogram`);
  let cumulative = 0;
  LATENCY_BUCKETS_MS.forEach((bound, i) => {
    cumulative += snapshot.latencyTotals[i] ?? 0;
    lines.push(`${hist}_bucket{le="${bound / 1000}"} ${cumulative}`);
  });
  cumulative += snapshot.latencyTotals[LATENCY_BUCKETS_MS.length] ?? 0;
  lines.push(`${hist}_bucket{le="+Inf"} ${cumulative}`);
  // Milliseconds summed as integers, written in seconds (exact to the millisecond).
  lines.push(`${hist}_sum ${value((snapshot.totals[LATENCY_SUM_KEY] ?? 0) / 1000)}`);
  lines.push(`${hist}_count ${cumulative}`);
  return `${lines.join("\n")}\n`;
}
