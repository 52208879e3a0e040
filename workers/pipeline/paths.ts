/**
 * Paths as the gateway prices them: the MCP endpoint however an origin router may spell it,
 * and the OAuth metadata paths that always cost 0.
 */

/** Paths of OAuth metadata (RFC 9728, RFC 8414, OpenID Discovery): always cost 0. */
export const OAUTH_METADATA = /^\/\.well-known\/(oauth-protected-resource|oauth-authorization-server|openid-configuration)(\/|$)/;

/**
 * A path as an origin router may match it: percent-decoded, lowercase, without repeated
 * or trailing slashes. Every spelling the origin could route to the MCP endpoint (`/MCP`,
 * `/mcp/`, `/%6Dcp`) must be priced as the endpoint.
 */
export function normalizePath(path: string): string {
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // keep the raw path: it cannot be the endpoint's spelling anyway
  }
  return (
    decoded
      .toLowerCase()
      .replace(/\/{2,}/g, "/")
      .replace(/\/+$/, "") || "/"
  );
}
