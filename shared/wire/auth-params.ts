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
  const sc = new Scanner(header);
  sc.skipSpace();
  const first = sc.readToken();
  if (!first) return null;
  sc.skipSpace();
  // A leading token not followed by "=" is the scheme; otherwise it is the first name.
  const scheme = sc.at("=") ? null : first;
  let name: string = scheme === null ? first : (sc.skipSpace(), sc.readToken());
  const params: Record<string, string> = Object.create(null);
  if (scheme !== null && !name) return sc.done ? { scheme, params } : null;
  for (;;) {
    sc.skipSpace();
    if (!sc.take("=")) return null;
    sc.skipSpace();
    const value = sc.at('"') ? sc.readQuoted() : sc.readToken() || null;
    if (value === null) return null;
    const key = name.toLowerCase();
    if (key in params) return null;
    params[key] = value;
    sc.skipSpace();
    if (sc.done) return { scheme, params };
    if (!sc.take(",")) return null;
    sc.skipSpace();
    name = sc.readToken();
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
  const sc = new Scanner(header);
  const out: ChallengeWithText[] = [];
  sc.skipSeparators();
  while (!sc.done) {
    const challenge = readChallenge(sc);
    if (challenge === null) return null;
    out.push(challenge);
  }
  return out;
}

/** One challenge of a list at the scanner's position (`scheme [ 1*SP ( token68 / #auth-param ) ]`), and the separators after it; null when malformed. */
function readChallenge(sc: Scanner): ChallengeWithText | null {
  const scheme = sc.readToken();
  if (!scheme) return null;
  const params: Record<string, string> = Object.create(null);
  const challenge: ChallengeWithText = { scheme, params, text: "" };
  const afterScheme = sc.i;
  sc.skipSpace();
  if (sc.done || sc.at(",")) {
    sc.skipSeparators();
    return challenge;
  }
  if (sc.i === afterScheme) return null; // 1*SP between the scheme and what follows
  const textStart = sc.i;
  const first = sc.readParam();
  if (first === "bad") return null;
  if (first === null) {
    const token68 = sc.readToken68();
    if (token68 === null) return null;
    params[""] = token68;
    challenge.text = token68;
    if (sc.skipSeparators() && sc.atParam()) return null; // token68 and auth-params exclude each other
    return challenge;
  }
  params[first[0]] = first[1];
  const textEnd = readMoreParams(sc, params);
  if (textEnd === null) return null;
  challenge.text = sc.s.slice(textStart, textEnd);
  return challenge;
}

/**
 * The auth-params of a challenge after its first one (`, name=value`…), into `params`, up to
 * the end or a comma that starts a new challenge (left behind the separators).
 * @returns where the text of the last parameter ends; null when malformed (a name twice included)
 */
function readMoreParams(sc: Scanner, params: Record<string, string>): number | null {
  let textEnd = sc.i;
  for (;;) {
    sc.skipSpace();
    if (sc.done) return textEnd;
    if (!sc.at(",")) return null;
    sc.skipSeparators();
    if (sc.done || !sc.atParam()) return textEnd;
    const next = sc.readParam();
    if (next === null || next === "bad" || next[0] in params) return null;
    params[next[0]] = next[1];
    textEnd = sc.i;
  }
}

/** A cursor over a header value: reads RFC 9110 tokens, quoted-strings, auth-params and token68 at `i`. */
class Scanner {
  readonly s: string;
  i = 0;

  constructor(s: string) {
    this.s = s;
  }

  /** Whether everything was read. */
  get done(): boolean {
    return this.i >= this.s.length;
  }

  /** Whether `ch` is at `i`. */
  at(ch: string): boolean {
    return this.s[this.i] === ch;
  }

  /** Step over `ch` at `i`; false (with `i` one further anyway) when another character, or nothing, is there. */
  take(ch: string): boolean {
    return this.s[this.i++] === ch;
  }

  /** Skip OWS (spaces and tabs). */
  skipSpace(): void {
    while (this.s[this.i] === " " || this.s[this.i] === "\t") this.i++;
  }

  /** The token at `i` (`""` when none). */
  readToken(): string {
    const start = this.i;
    while (this.i < this.s.length && TOKEN.test(this.s[this.i]!)) this.i++;
    return this.s.slice(start, this.i);
  }

  /** Skip OWS and empty list elements; true when a comma was crossed. */
  skipSeparators(): boolean {
    let comma = false;
    for (;;) {
      this.skipSpace();
      if (this.s[this.i] !== ",") return comma;
      comma = true;
      this.i++;
    }
  }

  /** A quoted-string at `i` (opening quote included) → its value, or null when unterminated. */
  readQuoted(): string | null {
    const s = this.s;
    let value = "";
    for (this.i++; ; ) {
      if (this.i >= s.length) return null;
      const ch = s[this.i++]!;
      if (ch === '"') return value;
      if (ch === "\\") {
        if (this.i >= s.length) return null;
        value += s[this.i++];
      } else value += ch;
    }
  }

  /** True when a token followed by OWS "=" starts at `i` (an auth-param, not a new challenge). */
  atParam(): boolean {
    const save = this.i;
    const name = this.readToken();
    this.skipSpace();
    const yes = name !== "" && this.s[this.i] === "=";
    this.i = save;
    return yes;
  }

  /** Try `name BWS "=" BWS ( token / quoted-string )` at `i`; null (with `i` unchanged) if absent, "bad" when malformed. */
  readParam(): [string, string] | null | "bad" {
    const save = this.i;
    const name = this.readToken();
    this.skipSpace();
    if (!name || this.s[this.i] !== "=") {
      this.i = save;
      return null;
    }
    this.i++;
    this.skipSpace();
    if (this.s[this.i] === '"') {
      const value = this.readQuoted();
      return value === null ? "bad" : [name.toLowerCase(), value];
    }
    const value = this.readToken();
    if (!value) {
      this.i = save;
      return null; // `abc=` then end or ",": a token68 with padding
    }
    return [name.toLowerCase(), value];
  }

  /** Try a token68 followed by OWS and then the end or a comma; null (with `i` unchanged) if absent. */
  readToken68(): string | null {
    const save = this.i;
    while (this.i < this.s.length && TOKEN68_CHAR.test(this.s[this.i]!)) this.i++;
    if (this.i === save) return null;
    while (this.s[this.i] === "=") this.i++;
    const value = this.s.slice(save, this.i);
    this.skipSpace();
    if (this.i < this.s.length && this.s[this.i] !== ",") {
      this.i = save;
      return null;
    }
    return value;
  }
}
