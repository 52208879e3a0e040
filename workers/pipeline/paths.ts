/**
 * Paths as the gateway prices them: the MCP endpoint however an origin router may spell it,
 * the spellings no two origins read alike (refused), and the OAuth metadata paths that
 * always cost 0.
 */

/** Paths of OAuth metadata (RFC 9728, RFC 8414, OpenID Discovery): always cost 0. */
export const OAUTH_METADATA = /^\/\.well-known\/(oauth-protected-resource|oauth-authorization-server|openid-configuration)(\/|$)/;

/** A `%` not followed by two hex digits. */
const BAD_ESCAPE = /%(?![0-9a-f]{2})/i;
/** An escaped `/` or `\`: a separator only some origins see. */
const ESCAPED_SEPARATOR = /%(2f|5c)/i;

/**
 * Percent-decode once (double encoding stays encoded: `%252e` is `%2e`, not a dot); bytes
 * that are not UTF-8 become U+FFFD; a malformed escape is left as it is.
 */
function decodeOnce(path: string): string {
  return path.replace(/(?:%[0-9a-f]{2})+/gi, (run) =>
    new TextDecoder().decode(
      new Uint8Array(
        run
          .slice(1)
          .split("%")
          .map((h) => parseInt(h, 16)),
      ),
    ),
  );
}

/**
 * A path as an origin router that decodes and resolves it (nginx, a WHATWG URL parser) reads
 * it: percent-decoded once, dot segments (`.`, `..`) resolved after decoding (RFC 3986
 * §5.2.4), repeated and trailing slashes removed, lowercase. Every spelling such an origin
 * routes to the MCP endpoint (`/MCP`, `/mcp/`, `/%6Dcp`, `/x/%2e%2e/mcp`, `/mcp/./`) is the
 * endpoint's. A spelling origins read differently is refused first (`pathProblem`).
 */
export function normalizePath(path: string): string {
  const out: string[] = [];
  for (const seg of decodeOnce(path).toLowerCase().split("/")) {
    if (seg === "..") out.pop();
    else if (seg !== "." && seg !== "") out.push(seg);
  }
  return `/${out.join("/")}`;
}

/**
 * Why no one reading of the raw path (as the URL carries it) can be priced, or null when
 * there is one. Origins disagree on these, so whatever the gateway priced, some origin would
 * route the request elsewhere (`/x/..%2Fmcp`: nginx decodes, then resolves to `/mcp`;
 * Express matches the raw segments and finds no route):
 * - a malformed escape (`%zz`, a lone `%`): nginx answers 400 itself;
 * - an escaped separator, `%2F` or `%5C` (`\`): one segment for Express, two for nginx;
 * - a dot segment left after decoding (`%2e%2e` where the URL parser did not resolve it,
 *   `..` above the root): resolved by some origins, a plain name for others.
 * Double encoding (`%252e`) is no dot for any origin that decodes once: it stays a name.
 * @returns a sentence for the 400's message, or null
 */
export function pathProblem(path: string): string | null {
  if (BAD_ESCAPE.test(path)) return "a malformed escape";
  if (ESCAPED_SEPARATOR.test(path)) return "an escaped / or \\ (%2F, %5C)";
  if (
    decodeOnce(path)
      .split("/")
      .some((seg) => seg === "." || seg === "..")
  )
    return "a . or .. segment";
  return null;
}
