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
