/**
 * A loopback JWKS server for identity tests, with keys made by `jose` in the test:
 *
 *   const key = await signingKey("ES256", "k1");
 *   const jwks = await startJwks([key]);          // GET `${jwks.url}` → {"keys":[…public JWKs…]}
 *   const token = await key.sign({ sub: "alice" }, { issuer: ISS, audience: AUD });
 *   jwks.serve([key, next]);                       // rotation: swap the served set
 *   jwks.slow(1000); jwks.fail(500);               // a slow or failing JWKS (0 / undefined: healthy)
 *   jwks.fetches();                                // how many times the set was fetched (requests received)
 *   await jwks.close();
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

/** A key pair made for a test, with its public JWK (carrying `kid`, `alg`, `use`). */
export interface SigningKey {
  kid: string;
  alg: string;
  publicJwk: JWK;
  privateKey: CryptoKey;
  /**
   * A signed JWT. Claims given in `payload` win; `iat` now, `exp` `expiresIn` from now
   * (default "5m") unless `payload.exp` is given; `kid` in the header unless `noKid`.
   */
  sign(
    payload: JWTPayload,
    opts: { issuer?: string; audience?: string | string[]; expiresIn?: string | number; notBefore?: string | number; noKid?: boolean },
  ): Promise<string>;
}

/** A fresh key pair (`alg`: ES256, RS256, EdDSA, …) named `kid`. */
export async function signingKey(alg: string, kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return {
    kid,
    alg,
    publicJwk,
    privateKey,
    sign: async (payload, opts) => {
      let jwt = new SignJWT(payload).setProtectedHeader(opts.noKid ? { alg } : { alg, kid }).setIssuedAt();
      if (opts.issuer !== undefined) jwt = jwt.setIssuer(opts.issuer);
      if (opts.audience !== undefined) jwt = jwt.setAudience(opts.audience);
      if (payload.exp === undefined) jwt = jwt.setExpirationTime(opts.expiresIn ?? "5m");
      if (opts.notBefore !== undefined) jwt = jwt.setNotBefore(opts.notBefore);
      return jwt.sign(privateKey);
    },
  };
}

/** Handle of {@link startJwks}. */
export interface JwksServer {
  /** The JWKS URL, e.g. `http://127.0.0.1:41234/jwks.json`. */
  url: string;
  /** Serve these keys' public JWKs from now on (rotation). */
  serve(keys: SigningKey[]): void;
  /** Answer each request `ms` milliseconds after it arrives, from now on (0: at once). */
  slow(ms: number): void;
  /** Answer with this HTTP status and an error body from now on (undefined: serve the keys again). */
  fail(status: number | undefined): void;
  /** GET requests for the set received so far (counted on arrival, answered or not yet). */
  fetches(): number;
  close(): Promise<void>;
}

/** Starts a JWKS server on 127.0.0.1 (free port) serving `keys`' public JWKs at `/jwks.json`. */
export async function startJwks(keys: SigningKey[]): Promise<JwksServer> {
  let body = JSON.stringify({ keys: keys.map((k) => k.publicJwk) });
  let count = 0;
  let delayMs = 0;
  let failure: number | undefined;
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || req.url !== "/jwks.json") {
      res.writeHead(404).end();
      return;
    }
    count++;
    const [status, text] = failure === undefined ? [200, body] : [failure, JSON.stringify({ error: "unavailable" })];
    const answer = () => res.writeHead(status, { "content-type": "application/jwk-set+json", "cache-control": "no-store" }).end(text);
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    serve: (next) => {
      body = JSON.stringify({ keys: next.map((k) => k.publicJwk) });
    },
    slow: (ms) => {
      delayMs = ms;
    },
    fail: (status) => {
      failure = status;
    },
    fetches: () => count,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
