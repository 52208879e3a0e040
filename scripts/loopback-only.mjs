/**
 * Node preload that pins every TCP listener to the loopback interface.
 *
 *   node --import ./scripts/loopback-only.mjs some-server.js
 *
 * Programs such as `@modelcontextprotocol/server-everything` call
 * `app.listen(PORT)`, which binds all interfaces. This patches
 * `net.Server.prototype.listen` (used by http/https/express too) so that the
 * `listen(port[, host][, backlog][, cb])`, `listen()` and `listen({ port, host })`
 * forms always bind 127.0.0.1. Unix sockets / pipes (`listen(path)`,
 * `{ path }`) and handle / fd forms are passed through untouched.
 */
import net from "node:net";

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

/** @this {net.Server} */
net.Server.prototype.listen = function listen(...args) {
  const cb = typeof args.at(-1) === "function" ? args.pop() : undefined;
  const [first, second, third] = args;
  let options;
  if (first !== null && typeof first === "object") {
    // Options object, or a server handle / `{ fd }` (left alone).
    const isOptions = first.path === undefined && first.handle === undefined && first._handle === undefined && first.fd === undefined;
    if (isOptions) options = { ...first, host: LOOPBACK };
  } else if (first === undefined || first === null || typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen([port][, host][, backlog]): host is dropped, backlog kept.
    const backlog = typeof second === "number" ? second : typeof third === "number" ? third : undefined;
    options = { port: first == null ? 0 : Number(first), host: LOOPBACK };
    if (backlog !== undefined) options.backlog = backlog;
  }
  if (!options) return originalListen.apply(this, cb ? [...args, cb] : args);
  return cb ? originalListen.call(this, options, cb) : originalListen.call(this, options);
};
