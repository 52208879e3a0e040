/**
 * The live dashboard at `GET <admin path>`: an HTML shell with no data and no inline script
 * (Content-Security-Policy `script-src 'self'`). Its script (public/admin/dashboard.js) asks
 * for the admin token, keeps it in `sessionStorage` and sends it as a bearer header on its
 * `fetch`es of `<admin path>/stats`, `/policy` and `/callers/<id>` (the caller's page, opened
 * from its row: `#caller/<id>`); uPlot (public/uplot/) draws the chart.
 * Static files come from the Workers Static Assets binding `ASSETS` (wrangler.toml
 * `[assets]`, `run_worker_first = true`: nothing is served unless this Worker asks for it).
 */

/** Security headers of every admin answer (HTML, assets, JSON). */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = {
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** The dashboard's Content-Security-Policy: its own origin only, no inline script or style, no framing. */
export const DASHBOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Files served under `<admin path>/assets/<name>` (public code: served without the token),
 * by name → path in the `ASSETS` directory (public/). Anything else there is a 404.
 */
export const ASSET_FILES: Readonly<Record<string, string>> = {
  "uPlot.iife.min.js": "/uplot/uPlot.iife.min.js",
  "uPlot.min.css": "/uplot/uPlot.min.css",
  "dashboard.js": "/admin/dashboard.js",
  "dashboard.css": "/admin/dashboard.css",
};

/** Escape text for an HTML attribute value. */
function attr(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * The dashboard page.
 * @param base the admin path (e.g. `/admin`): the script reads it from `<meta name="tollbooth-admin">`
 */
export function dashboardHtml(base: string): string {
  const b = attr(base);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="tollbooth-admin" content="${b}">
<title>tollbooth · dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${b}/assets/uPlot.min.css">
<link rel="stylesheet" href="${b}/assets/dashboard.css">
<script src="${b}/assets/uPlot.iife.min.js" defer></script>
<script src="${b}/assets/dashboard.js" defer></script>
</head>
<body>
<header><h1>tollbooth</h1><span id="status">not connected</span><button id="sign-out" type="button" hidden>Forget token</button></header>
<form id="login">
  <label for="token">Admin token (TOLLBOOTH_ADMIN_TOKEN)</label>
  <input id="token" name="token" type="password" autocomplete="off" required>
  <button type="submit">Connect</button>
  <p id="login-error" role="alert"></p>
</form>
<main id="board" hidden>
  <section class="numbers" aria-label="Last hour">
    <div><span class="label">Requests</span><span id="n-requests" class="n">–</span></div>
    <div><span class="label">Admitted</span><span id="n-admitted" class="n">–</span></div>
    <div><span class="label">402 payment required</span><span id="n-payment-required" class="n">–</span></div>
    <div><span class="label">Solves (proof of work)</span><span id="n-solves" class="n">–</span></div>
    <div><span class="label">429 rate limited</span><span id="n-rate-limited" class="n">–</span></div>
    <div><span class="label">Blocked</span><span id="n-blocked" class="n">–</span></div>
    <div class="wide"><span class="label">Latency, as histogram bucket bounds</span><span id="n-latency" class="n small">–</span></div>
  </section>
  <section id="money-section"></section>
  <section><h2>Requests per minute, by decision (<span id="chart-window">last hour</span>)</h2><div id="chart"></div></section>
  <section><h2>Top callers (last hour)</h2>
    <table id="top-callers"><thead><tr><th>Caller</th><th>Requests</th><th>Admitted</th><th>Refused</th></tr></thead><tbody></tbody></table>
  </section>
  <section><h2>Policy</h2><pre id="policy"></pre></section>
</main>
<main id="caller-page" hidden></main>
</body>
</html>
`;
}
