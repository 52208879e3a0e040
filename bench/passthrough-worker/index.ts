/**
 * A bare pass-through Worker: forwards every request to ORIGIN_URL and does nothing else.
 * The benchmarks run it under the same `wrangler dev` as tollbooth, to separate what the
 * local runtime costs from what tollbooth's own work costs.
 */
interface Env {
  ORIGIN_URL: string;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/.well-known/tollbooth") return Response.json({ passthrough: true }); // readiness probe
    const headers = new Headers(request.headers);
    headers.delete("host");
    const body = request.method === "GET" || request.method === "HEAD" ? null : await request.arrayBuffer();
    const upstream = await fetch(env.ORIGIN_URL + url.pathname + url.search, { method: request.method, headers, body, redirect: "manual" });
    return new Response(upstream.body, upstream);
  },
} satisfies ExportedHandler<Env>;
