import { createServer } from "node:net";

/**
 * Returns a currently-free TCP port on 127.0.0.1 by briefly listening on
 * port 0 and closing again. (Small race window: another process could grab
 * the port before the caller binds it; fine for tests.)
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1" }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

/**
 * Bounded text buffer for a child process's output: keeps the last `max`
 * characters so failures can quote what the process said.
 */
export class OutputTail {
  private text = "";
  private readonly max: number;
  constructor(max = 64 * 1024) {
    this.max = max;
  }
  /** Appends a chunk, dropping the oldest text beyond `max` characters. */
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.max) this.text = this.text.slice(-this.max);
  }
  /** Everything retained so far. */
  toString(): string {
    return this.text;
  }
}
