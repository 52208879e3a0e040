/**
 * Authentication parameters as in RFC 9110 §11.2 (`WWW-Authenticate`, `Authorization`):
 * `scheme name=token, name="quoted string", ...`. Used for the `PowChallenge`
 * challenge and the `Tollbooth-Solution` request header.
 */

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A parsed challenge or credential: optional scheme and its parameters (names lowercased). */
export interface AuthParams {
  scheme: string | null;
  params: Record<string, string>;
}

/**
 * Serialize `scheme k1="v1", k2=v2`. Strings become quoted-strings (RFC 9110 §5.6.4),
 * numbers become tokens.
 * @throws TypeError for a parameter name that is not an RFC 9110 token
 */
export function formatAuthParams(scheme: string | null, params: Record<string, string | number>): string {
  const parts = Object.entries(params).map(([name, value]) => {
    if (!TOKEN.test(name)) throw new TypeError(`auth-param name ${JSON.stringify(name)} is not a token`);
    return typeof value === "number" ? `${name}=${value}` : `${name}="${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
  });
  return (scheme ? `${scheme} ` : "") + parts.join(", ");
}

/**
 * Parse one challenge or credential: an optional scheme followed by auth-params.
 * @param header the field value, at most 8 KiB
 * @returns the scheme (or null when the value starts with a parameter) and parameters;
 *   `null` when the value is malformed, too long, or names a parameter twice
 */
export function parseAuthParams(header: string): AuthParams | null {
  if (header.length > 8192) return null;
  const s = header;
  let i = 0;
  const skipSpace = () => {
    while (s[i] === " " || s[i] === "\t") i++;
  };
  const readToken = () => {
    const start = i;
    while (i < s.length && TOKEN.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  skipSpace();
  const first = readToken();
  if (!first) return null;
  skipSpace();
  // A leading token not followed by "=" is the scheme; otherwise it is the first name.
  const scheme = s[i] === "=" ? null : first;
  let name: string = scheme === null ? first : (skipSpace(), readToken());
  const params: Record<string, string> = Object.create(null);
  if (scheme !== null && !name) return i >= s.length ? { scheme, params } : null;
  for (;;) {
    skipSpace();
    if (s[i++] !== "=") return null;
    skipSpace();
    let value = "";
    if (s[i] === '"') {
      for (i++; ; ) {
        if (i >= s.length) return null;
        const ch = s[i++]!;
        if (ch === '"') break;
        if (ch === "\\") {
          if (i >= s.length) return null;
          value += s[i++];
        } else value += ch;
      }
    } else {
      value = readToken();
      if (!value) return null;
    }
    const key = name.toLowerCase();
    if (key in params) return null;
    params[key] = value;
    skipSpace();
    if (i >= s.length) return { scheme, params };
    if (s[i++] !== ",") return null;
    skipSpace();
    name = readToken();
    if (!name) return null;
  }
}

/** token68 (RFC 9110 §11.2): the characters before its trailing `=` padding. */
const TOKEN68_CHAR = /^[A-Za-z0-9\-._~+/]$/;

/** One challenge of a `WWW-Authenticate` list, with the text of its parameters as received. */
export interface ChallengeWithText extends AuthParams {
  /** The challenge's scheme (never null in a challenge list). */
  scheme: string;
  /**
   * The challenge's token68 or auth-params exactly as received, without the scheme and
   * without surrounding whitespace (`""` when it has none): what a `PowChallenge` solution
   * echoes back in `Tollbooth-Solution` (docs/wire-contract.md §2a).
   */
  text: string;
}

/**
 * Parse a list of challenges (RFC 9110 §11.6.1), each `scheme [ 1*SP ( token68 / #auth-param ) ]`,
 * as in a `WWW-Authenticate` value — several field lines joined with `", "` by `Headers.get`
 * read the same as one. Empty list elements (`a, , b`) are skipped (§5.6.1). Scheme names are
 * kept as received (compare them case-insensitively); parameter names are lowercased.
 *
 * A token68 (e.g. `Basic dXNlcjpwYXNz`, `Negotiate abc==`) is kept as the parameter named `""`
 * (the empty string, which no auth-param can be named), so `params[""]` is the token68.
 *
 * How a list is split: after a parameter, a comma followed by `name =` continues the same
 * challenge; a comma followed by a token that is not followed by `=` starts a new challenge.
 *
 * @param header the field value, at most 8 KiB (8192 characters)
 * @returns the challenges in order, each `{ scheme, params }`; `[]` for an empty or blank
 *   value; `null` when the value is malformed (an unterminated quoted-string, a parameter
 *   without a value, a parameter after a token68, a name given twice in one challenge, …)
 *   or longer than 8 KiB
 */
export function parseChallenges(header: string): AuthParams[] | null {
  return parseChallengesWithText(header)?.map(({ scheme, params }) => ({ scheme, params })) ?? null;
}

/**
 * `parseChallenges`, each challenge also carrying `text`: its token68 or auth-params
 * exactly as received (for echoing a challenge back, as a `Tollbooth-Solution` does).
 * @param header the field value, at most 8 KiB
 * @returns as `parseChallenges`, or `null` under the same conditions
 */
export function parseChallengesWithText(header: string): ChallengeWithText[] | null {
  if (header.length > 8192) return null;
  const s = header;
  let i = 0;
  const skipSpace = () => {
    while (s[i] === " " || s[i] === "\t") i++;
  };
  const readToken = () => {
    const start = i;
    while (i < s.length && TOKEN.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  /** Skip OWS and empty list elements; true when a comma was crossed. */
  const skipSeparators = () => {
    let comma = false;
    for (;;) {
      skipSpace();
      if (s[i] !== ",") return comma;
      comma = true;
      i++;
    }
  };
  /** A quoted-string at `i` (opening quote included) → its value, or null. */
  const readQuoted = (): string | null => {
    let value = "";
    for (i++; ; ) {
      if (i >= s.length) return null;
      const ch = s[i++]!;
      if (ch === '"') return value;
      if (ch === "\\") {
        if (i >= s.length) return null;
        value += s[i++];
      } else value += ch;
    }
  };
  /** True when a token followed by OWS "=" starts at `i` (an auth-param, not a new challenge). */
  const atParam = () => {
    const save = i;
    const name = readToken();
    skipSpace();
    const yes = name !== "" && s[i] === "=";
    i = save;
    return yes;
  };
  /** Try `name BWS "=" BWS ( token / quoted-string )` at `i`; null (with `i` unchanged) if absent. */
  const readParam = (): [string, string] | null | "bad" => {
    const save = i;
    const name = readToken();
    skipSpace();
    if (!name || s[i] !== "=") {
      i = save;
      return null;
    }
    i++;
    skipSpace();
    if (s[i] === '"') {
      const value = readQuoted();
      return value === null ? "bad" : [name.toLowerCase(), value];
    }
    const value = readToken();
    if (!value) {
      i = save;
      return null; // `abc=` then end or ",": a token68 with padding
    }
    return [name.toLowerCase(), value];
  };
  /** Try a token68 followed by OWS and then the end or a comma; null (with `i` unchanged) if absent. */
  const readToken68 = (): string | null => {
    const save = i;
    while (i < s.length && TOKEN68_CHAR.test(s[i]!)) i++;
    if (i === save) return null;
    while (s[i] === "=") i++;
    const value = s.slice(save, i);
    skipSpace();
    if (i < s.length && s[i] !== ",") {
      i = save;
      return null;
    }
    return value;
  };

  const out: ChallengeWithText[] = [];
  skipSeparators();
  while (i < s.length) {
    const scheme = readToken();
    if (!scheme) return null;
    const params: Record<string, string> = Object.create(null);
    const challenge: ChallengeWithText = { scheme, params, text: "" };
    out.push(challenge);
    const afterScheme = i;
    skipSpace();
    if (i >= s.length || s[i] === ",") {
      skipSeparators();
      continue;
    }
    if (i === afterScheme) return null; // 1*SP between the scheme and what follows
    const textStart = i;
    const first = readParam();
    if (first === "bad") return null;
    if (first === null) {
      const token68 = readToken68();
      if (token68 === null) return null;
      params[""] = token68;
      challenge.text = token68;
      if (skipSeparators() && atParam()) return null; // token68 and auth-params exclude each other
      continue;
    }
    params[first[0]] = first[1];
    let textEnd = i;
    for (;;) {
      skipSpace();
      if (i >= s.length) break;
      if (s[i] !== ",") return null;
      skipSeparators();
      if (i >= s.length || !atParam()) break;
      const next = readParam();
      if (next === null || next === "bad" || next[0] in params) return null;
      params[next[0]] = next[1];
      textEnd = i;
    }
    challenge.text = s.slice(textStart, textEnd);
  }
  return out;
}
