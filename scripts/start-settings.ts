/**
 * What `npm start` (scripts/start.ts) hands the gateway, and the checks it makes before it
 * waits on `wrangler dev`:
 * - the settings, from the process environment and the repository's `.dev.vars` (else `.env`,
 *   `.env.local`, as wrangler reads them), the environment winning; every var and secret the
 *   Worker reads (workers/env.ts, .dev.vars.example) and each route's `originSecret`;
 * - the settings written as a dotenv file for `wrangler dev --env-file` (so no secret is on a
 *   command line, and wrangler reads no other file);
 * - `ORIGIN_URL` (or a route's `origin`) as a URL a gateway can forward to: a scheme, no `/mcp`
 *   at the end; a TCP probe of the origin.
 */
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { readDotVars } from "./check-config.ts";

/** Vars of the Worker (workers/env.ts, wrangler.toml `[vars]`). */
export const VAR_NAMES = [
  "ORIGIN_URL",
  "TOLLBOOTH_POLICY",
  "TOLLBOOTH_ROUTES",
  "TOLLBOOTH_ADMIN_PATH",
  "TOLLBOOTH_METRICS_FLUSH_MS",
  "TOLLBOOTH_DECISION_LOG",
  "TOLLBOOTH_DECISION_LOG_SAMPLE",
] as const;
/** Secrets of the Worker (workers/env.ts, .dev.vars.example); a route's `originSecret` names more. */
export const SECRET_SETTING_NAMES = [
  "TOLLBOOTH_SECRET",
  "TOLLBOOTH_ORIGIN_SECRET",
  "TOLLBOOTH_LIGHTNING_SECRET",
  "TOLLBOOTH_FACILITATOR_AUTH",
  "TOLLBOOTH_ADMIN_TOKEN",
] as const;

/** Where a setting came from. */
export type SettingSource = "environment" | ".dev.vars" | ".env";

/** The settings `npm start` runs the gateway with. */
export interface Settings {
  /** Each set setting's value (blank values are unset). */
  values: Record<string, string>;
  /** Where each value came from. */
  sources: Record<string, SettingSource>;
}

/** The names a route's `originSecret` gives, from `TOLLBOOTH_ROUTES` (invalid JSON: none; the Worker reports it). */
function routeSecretNames(routes: string | undefined): string[] {
  if (routes === undefined || routes.trim() === "") return [];
  try {
    const list: unknown = JSON.parse(routes);
    if (!Array.isArray(list)) return [];
    return list.flatMap((r) =>
      r && typeof r === "object" && typeof (r as { originSecret?: unknown }).originSecret === "string"
        ? [(r as { originSecret: string }).originSecret]
        : [],
    );
  } catch {
    return [];
  }
}

/**
 * Gather the settings: every name of `VAR_NAMES` and `SECRET_SETTING_NAMES` and each route's
 * `originSecret`, from `processEnv` (a value there wins) and `dir`'s `.dev.vars` (when it exists;
 * else `.env` then `.env.local`, the later winning, as `wrangler dev` reads them). A blank value
 * counts as unset.
 * @param processEnv the process environment
 * @param dir the directory holding wrangler.toml (the repository)
 */
export function readSettings(processEnv: Readonly<Record<string, string | undefined>>, dir: string): Settings {
  let file: Record<string, string> = {};
  let fileName: SettingSource = ".dev.vars";
  if (existsSync(join(dir, ".dev.vars"))) file = readDotVars(readFileSync(join(dir, ".dev.vars"), "utf8"));
  else {
    fileName = ".env";
    for (const name of [".env", ".env.local"])
      if (existsSync(join(dir, name))) Object.assign(file, readDotVars(readFileSync(join(dir, name), "utf8")));
  }
  const values: Record<string, string> = {};
  const sources: Record<string, SettingSource> = {};
  const take = (name: string) => {
    const env = processEnv[name];
    if (env !== undefined && env.trim() !== "") {
      values[name] = env;
      sources[name] = "environment";
    } else if (file[name] !== undefined) {
      values[name] = file[name];
      sources[name] = fileName;
    }
  };
  for (const name of [...VAR_NAMES, ...SECRET_SETTING_NAMES]) take(name);
  for (const name of routeSecretNames(values.TOLLBOOTH_ROUTES)) if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) take(name);
  return { values, sources };
}

/**
 * Settings as a dotenv file for `wrangler dev --env-file` (wrangler 4 parses it with `dotenv`
 * and expands `$NAME` with `dotenv-expand`): each value single-quoted (else double-quoted, else in
 * backticks: a quoted value is taken as written, newlines included) and every `$` escaped as
 * `\$`, so the Worker gets the value exactly.
 * @returns the file's text, and the values no quoting can hold (they hold `'`, `"` and `` ` ``
 *   — a double-quoted value would turn a `\n` in it into a newline — or end in `\`): pass those
 *   as `--var`
 */
export function toEnvFile(values: Readonly<Record<string, string>>): { text: string; unquotable: Record<string, string> } {
  const lines: string[] = [];
  const unquotable: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    const escaped = value.replace(/\$/g, "\\$");
    // dotenv reads `\<quote>` inside a quoted value as part of it: a value ending in `\` has no closing quote.
    const quote = escaped.endsWith("\\")
      ? null
      : !value.includes("'")
        ? "'"
        : !value.includes('"') && !/\\[nr]/.test(escaped)
          ? '"'
          : !value.includes("`")
            ? "`"
            : null;
    if (quote === null) unquotable[name] = value;
    else lines.push(`${name}=${quote}${escaped}${quote}`);
  }
  return { text: lines.length ? `${lines.join("\n")}\n` : "", unquotable };
}

/**
 * What is wrong with an origin URL `npm start` is asked to front, in the words an operator needs.
 * @param label the setting (`ORIGIN_URL`, `TOLLBOOTH_ROUTES[0] ("a").origin`)
 * @param value its value
 * @param endpoint the policy's MCP endpoint (`/mcp`): a base URL ending in it is the usual mistake
 * @returns a sentence naming the setting and the fix, or null when it is a base URL to forward to
 */
export function originUrlProblem(label: string, value: string, endpoint: string): string | null {
  const base = label === "ORIGIN_URL" ? "`ORIGIN_URL` is the origin's base URL" : `${label} is the origin's base URL`;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value.trim())) {
    const guess = /^(localhost|127\.|\[?::1|0\.0\.0\.0)/i.test(value.trim()) ? `http://${value.trim()}` : `https://${value.trim()}`;
    return `${base}, with its scheme: got ${JSON.stringify(value)}; did you mean ${label === "ORIGIN_URL" ? `ORIGIN_URL=${guess}` : guess}?`;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${base}: ${JSON.stringify(value)} is not a URL`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `${base}, http or https: got ${url.protocol}`;
  if (url.search !== "" || url.hash !== "") return `${base}, without a query or fragment: got ${JSON.stringify(value)}`;
  const path = url.pathname.replace(/\/+$/, "");
  if (endpoint !== "/" && (path === endpoint || path.endsWith(endpoint))) {
    const fixed = `${url.origin}${path.slice(0, path.length - endpoint.length)}`;
    return `${base}, without \`${endpoint}\`: the gateway appends each request's path, so a client's ${endpoint} would reach ${url.origin}${path}${endpoint}. Use ${label === "ORIGIN_URL" ? `ORIGIN_URL=${fixed}` : fixed}`;
  }
  return null;
}

/** The outcome of {@link probeOrigin}. */
export type ProbeResult = { ok: true } | { ok: false; unreachable: boolean; reason: string };

/**
 * Open (and close) a TCP connection to an origin's host and port: nothing is sent, so the
 * origin sees no request.
 * @param url an http(s) URL (port 80/443 when it names none)
 * @param timeoutMs how long to wait for the connection
 * @returns ok; or not, `unreachable` when the connection was refused or the name did not
 *   resolve (nothing can reach it), false when it only did not answer within `timeoutMs`
 */
export function probeOrigin(url: string, timeoutMs: number): Promise<ProbeResult> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => done({ ok: false, unreachable: false, reason: `no answer from ${host}:${port} within ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.once("connect", () => done({ ok: true }));
    socket.once("error", (err: NodeJS.ErrnoException) => {
      const why =
        err.code === "ECONNREFUSED"
          ? `connection refused: nothing listens on ${host}:${port}`
          : err.code === "ENOTFOUND" || err.code === "EAI_AGAIN"
            ? `the name ${host} does not resolve (${err.code})`
            : `${err.code ?? err.message}`;
      done({ ok: false, unreachable: true, reason: why });
    });
  });
}
