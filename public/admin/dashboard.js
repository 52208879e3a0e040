/*
 * tollbooth's live dashboard (served by the Worker under <admin path>/assets/dashboard.js;
 * see docs/admin.md). Asks for the admin token, keeps it in sessionStorage (this tab only,
 * never in the URL) and sends it as `Authorization: Bearer` on every fetch. Polls
 * <admin path>/stats every POLL_MS: the last hour's numbers, the money received (`money`:
 * per scheme, last hour and last day), solves and the latest difficulty, requests per
 * minute by decision (uPlot, zoomed to the minutes that have data), the top callers. A
 * caller's row opens its page (`#caller/<id>`): <admin path>/callers/<id> (plan, buckets,
 * recent decisions) with reset, block and unblock. Everything is written with textContent.
 */
(function () {
  "use strict";
  var POLL_MS = 3000;
  var STORAGE_KEY = "tollbooth-admin-token";
  /** Fewest minutes the chart shows (a first burst is not one bar at the edge of an hour). */
  var MIN_CHART_MINUTES = 5;
  /** How the money cards name a scheme (its `type` otherwise). */
  var SCHEME_NAMES = { l402: "L402", x402: "x402" };
  /** Decisions of workers/observe/types.ts, in chart order, with their colours. */
  var DECISIONS = [
    ["admitted", "#2e7d32"],
    ["admitted_unmetered", "#81c784"],
    ["payment_required", "#f9a825"],
    ["rate_limited", "#e65100"],
    ["bad_request", "#6d4c41"],
    ["unavailable", "#c62828"],
    ["blocked", "#6a1b9a"],
    ["own_endpoint", "#1565c0"],
  ];
  var base = document.querySelector('meta[name="tollbooth-admin"]').getAttribute("content");
  var $ = function (id) {
    return document.getElementById(id);
  };
  /**
   * Markup of the money cards' section and of the caller's page: constant (no data in it),
   * kept here rather than in the Worker's HTML so that the Worker's bundle stays small.
   */
  var MONEY_SECTION =
    "<h2>Money received and work done</h2>" +
    '<div id="money" class="numbers" aria-label="Money received"></div>' +
    '<div class="numbers" aria-label="Proof of work">' +
    '<div><span class="label">Solves · last hour</span><span id="n-solves-hour" class="n">–</span></div>' +
    '<div><span class="label">Solves · last day</span><span id="n-solves-day" class="n">–</span></div>' +
    '<div><span class="label">Current difficulty</span><span id="n-difficulty" class="n">–</span><span id="n-difficulty-note" class="note"></span></div>' +
    "</div>";
  var CALLER_PAGE =
    '<p><a id="caller-back" href="#">← all callers</a></p>' +
    '<h2>Caller <code id="caller-id"></code></h2>' +
    '<p id="caller-error" role="alert"></p>' +
    '<form id="caller-full" hidden>' +
    '<label for="caller-full-id">This caller is named by a hash prefix in the metrics. Its full id (<code>key:</code>, <code>jwt:</code> or <code>auth:</code> + 32 hex) shows its state:</label>' +
    '<input id="caller-full-id" autocomplete="off" spellcheck="false">' +
    '<button type="submit">Open</button>' +
    "</form>" +
    '<div id="caller-routes"></div>' +
    '<section id="caller-state" hidden>' +
    '<dl class="facts">' +
    '<dt>Plan</dt><dd id="caller-plan"></dd>' +
    '<dt>Free bucket</dt><dd id="caller-bucket"></dd>' +
    '<dt>Ceiling</dt><dd id="caller-ceiling"></dd>' +
    '<dt>Token credits</dt><dd id="caller-credits"></dd>' +
    '<dt>Solves (decaying)</dt><dd id="caller-solves"></dd>' +
    '<dt>Blocked</dt><dd id="caller-blocked"></dd>' +
    "</dl>" +
    '<div class="actions">' +
    '<button id="caller-reset" type="button">Reset buckets</button>' +
    '<label for="caller-block-seconds">Block for (s)</label><input id="caller-block-seconds" type="number" min="1" max="2592000" value="3600">' +
    '<button id="caller-block" type="button">Block</button>' +
    '<button id="caller-unblock" type="button">Unblock</button>' +
    '<span id="caller-action" role="status"></span>' +
    "</div>" +
    "</section>" +
    "<section><h2>Recent decisions</h2>" +
    '<table id="caller-recent"><thead><tr><th>Time</th><th>Request</th><th>Decision</th><th>Why</th><th>Status</th><th>Latency</th></tr></thead><tbody></tbody></table>' +
    "</section>";
  $("money-section").innerHTML = MONEY_SECTION;
  $("caller-page").innerHTML = CALLER_PAGE;
  var plot = null;
  var timer = null;
  /** The latest snapshot (the caller page reads its recent decisions) and the policy. */
  var lastSnap = null;
  var policy = null;

  function token() {
    return sessionStorage.getItem(STORAGE_KEY);
  }

  /**
   * A request to the admin API. Resolves with the parsed JSON of a 2xx; rejects with an
   * Error carrying `status` and `body` (the API's `{error, message}`) otherwise.
   */
  function api(path, options) {
    var init = { headers: { authorization: `Bearer ${token()}` }, cache: "no-store" };
    if (options?.method) init.method = options.method;
    if (options && options.body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(base + path, init).then(function (res) {
      if (res.status === 401) {
        signOut("The token was refused.");
        throw new Error("unauthorized");
      }
      return res.json().then(
        function (body) {
          if (res.ok) return body;
          var err = new Error(body?.message || `${path}: HTTP ${res.status}`);
          err.status = res.status;
          err.body = body;
          throw err;
        },
        function () {
          var err = new Error(`${path}: HTTP ${res.status}`);
          err.status = res.status;
          throw err;
        },
      );
    });
  }

  /** Sum of counters named `name{…label…}` (or exactly `name`) over the minutes. */
  function sum(minutes, key) {
    var total = 0;
    for (var i = 0; i < minutes.length; i++) total += minutes[i].counters[key] || 0;
    return total;
  }
  /** Sum of every counter whose name starts with `prefix` (all label values). */
  function sumPrefix(minutes, prefix) {
    var total = 0;
    for (var i = 0; i < minutes.length; i++) {
      var c = minutes[i].counters;
      for (var k in c) if (Object.prototype.hasOwnProperty.call(c, k) && k.indexOf(prefix) === 0) total += c[k];
    }
    return total;
  }
  var decisionKey = function (d) {
    return `requests_total{decision="${d}"}`;
  };
  var plural = function (n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  };

  /**
   * Latency quantiles of the window as bucket bounds: "p50 ≤ 25 ms" means half the requests
   * took at most 25 ms (the histogram keeps buckets, not values); past the last bound, "> N ms".
   */
  function latencyText(minutes, bounds) {
    var hist = [];
    var total = 0;
    minutes.forEach(function (m) {
      (m.latency || []).forEach(function (n, i) {
        hist[i] = (hist[i] || 0) + n;
        total += n;
      });
    });
    if (total === 0) return "no requests";
    return [
      ["p50", 0.5],
      ["p90", 0.9],
      ["p99", 0.99],
    ]
      .map(function (q) {
        var rank = Math.ceil(q[1] * total);
        var seen = 0;
        for (var i = 0; i < hist.length; i++) {
          seen += hist[i] || 0;
          if (seen >= rank) break;
        }
        return `${q[0] + (i < bounds.length ? ` ≤ ${bounds[i]}` : ` > ${bounds[bounds.length - 1]}`)} ms`;
      })
      .join(" · ");
  }

  /** A card: label, big number, small note. */
  function card(id, label, value, note) {
    var div = document.createElement("div");
    div.id = id;
    [
      ["label", label],
      ["n", value],
      ["note", note],
    ].forEach(function (part) {
      var span = document.createElement("span");
      span.className = part[0];
      span.textContent = part[1];
      div.appendChild(span);
    });
    return div;
  }

  /** The money cards: per paying scheme, what the last hour and the last day brought in. */
  function renderMoney(money) {
    var cards = [];
    money.lastHour.received.forEach(function (hour, i) {
      var day = money.lastDay.received[i];
      var name = SCHEME_NAMES[hour.scheme] || hour.scheme;
      [
        ["hour", "last hour", hour],
        ["day", "last day", day],
      ].forEach(function (w) {
        cards.push(
          card(
            `money-${hour.scheme}-${w[0]}`,
            `${name} · ${w[1]}`,
            `${w[2].shown.amount} ${w[2].shown.unit}`,
            plural(w[2].payments, "payment", "payments"),
          ),
        );
      });
    });
    $("money").replaceChildren.apply($("money"), cards);
    $("n-solves-hour").textContent = String(money.lastHour.redeemed.pow || 0);
    $("n-solves-day").textContent = String(money.lastDay.redeemed.pow || 0);
    var baseBits = policy?.challenge ? policy.challenge.difficulty : null;
    if (money.difficulty) {
      $("n-difficulty").textContent = `${money.difficulty.bits} bits`;
      $("n-difficulty-note").textContent =
        `last offered ${new Date(money.difficulty.atMs).toLocaleTimeString()}${baseBits !== null ? ` · base ${baseBits} bits` : ""}`;
    } else {
      $("n-difficulty").textContent = baseBits !== null ? `${baseBits} bits` : "–";
      $("n-difficulty-note").textContent = `no challenge offered lately${baseBits !== null ? " · the policy's base" : ""}`;
    }
  }

  function renderCallers(topCallers) {
    var body = $("top-callers").tBodies[0];
    body.replaceChildren();
    topCallers.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.dataset.caller = c.caller;
      tr.tabIndex = 0;
      tr.title = `Open ${c.caller}`;
      [c.caller, c.requests, c.admitted, c.refused].forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  /**
   * The chart's minutes: from the first minute with a request (one before it, so a first
   * burst has a left edge) to now, at least MIN_CHART_MINUTES; the y axis from 0 to the
   * largest count shown.
   */
  function chartData(m) {
    var first = m.length;
    for (var i = 0; i < m.length; i++) {
      if (sumPrefix([m[i]], "requests_total{") > 0) {
        first = i;
        break;
      }
    }
    var from = Math.max(0, Math.min(first - 1, m.length - MIN_CHART_MINUTES));
    var shown = m.slice(from);
    var data = [
      shown.map(function (x) {
        return x.startMs / 1000;
      }),
    ];
    var max = 0;
    DECISIONS.forEach(function (d) {
      data.push(
        shown.map(function (x) {
          var n = x.counters[decisionKey(d[0])] || 0;
          if (n > max) max = n;
          return n;
        }),
      );
    });
    return { data: data, max: max, minutes: shown.length };
  }

  function renderChart(m) {
    var c = chartData(m);
    var chart = $("chart");
    chart.dataset.from = String(c.data[0][0]);
    chart.dataset.to = String(c.data[0][c.data[0].length - 1]);
    chart.dataset.ymax = String(Math.max(1, c.max));
    $("chart-window").textContent = c.minutes >= m.length ? "last hour" : `last ${c.minutes} minutes`;
    if (plot === null) {
      plot = new uPlot(
        {
          width: Math.max(320, chart.clientWidth || 800),
          height: 280,
          scales: {
            x: { time: true },
            y: {
              range: function () {
                return [0, Number(chart.dataset.ymax)];
              },
            },
          },
          series: [{}].concat(
            DECISIONS.map(function (d) {
              return { label: d[0], stroke: d[1], width: 2, points: { show: true, size: 4 } };
            }),
          ),
          axes: [{}, { label: "requests / minute" }],
        },
        c.data,
        chart,
      );
    } else {
      plot.setData(c.data);
    }
  }

  function render(snap) {
    lastSnap = snap;
    var m = snap.minutes;
    $("n-requests").textContent = String(sumPrefix(m, "requests_total{"));
    $("n-admitted").textContent = String(sum(m, decisionKey("admitted")));
    $("n-payment-required").textContent = String(sum(m, decisionKey("payment_required")));
    $("n-solves").textContent = String(sum(m, 'redeemed_total{scheme="pow"}'));
    $("n-rate-limited").textContent = String(sum(m, decisionKey("rate_limited")));
    $("n-blocked").textContent = String(sum(m, decisionKey("blocked")));
    $("n-latency").textContent = latencyText(m, snap.latencyBoundsMs || []);
    if (snap.money) renderMoney(snap.money);
    renderCallers(snap.topCallers);
    renderChart(m);
    $("status").textContent = `live · updated ${new Date(snap.nowMs).toLocaleTimeString()}`;
    document.body.dataset.updated = String(snap.nowMs);
  }

  function poll() {
    api("/stats").then(render, function (err) {
      if (err.message !== "unauthorized") $("status").textContent = `error: ${err.message}`;
    });
  }

  // ---- the caller's page -------------------------------------------------------------

  /** The caller id and route of the page's hash (`#caller/<id>[?route=<name>]`), or null. */
  function callerOfHash() {
    var m = /^#caller\/([^?]+)(?:\?route=(.+))?$/.exec(location.hash);
    if (!m) return null;
    try {
      return { id: decodeURIComponent(m[1]), route: m[2] ? decodeURIComponent(m[2]) : null };
    } catch (_e) {
      return null;
    }
  }
  function callerHash(id, route) {
    return `#caller/${encodeURIComponent(id)}${route ? `?route=${encodeURIComponent(route)}` : ""}`;
  }
  function callerPath(c, action) {
    return `/callers/${encodeURIComponent(c.id)}${action ? `/${action}` : ""}${c.route ? `?route=${encodeURIComponent(c.route)}` : ""}`;
  }

  function row(table, cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (v) {
      var td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    });
    table.tBodies[0].appendChild(tr);
  }

  /** The caller's recent decisions (newest first), as the decision log shows them. */
  function renderRecent(records) {
    var table = $("caller-recent");
    table.tBodies[0].replaceChildren();
    (records || []).forEach(function (r) {
      var what =
        (r.route ? `[${r.route}] ` : "") + (r.rpc ? r.rpc + (r.tool ? ` ${r.tool}` : "") : r.method + (r.path ? ` ${r.path}` : ""));
      var why = [r.reason, r.scheme && r.scheme !== r.reason ? r.scheme : null, r.difficulty !== undefined ? `${r.difficulty} bits` : null]
        .concat(r.paid ? [`${r.paid.amount} ${r.paid.unit} paid`] : [])
        .concat(r.credits !== undefined ? [`${plural(r.credits, "credit", "credits")} left`] : [])
        .filter(Boolean)
        .join(", ");
      row(table, [new Date(r.time).toLocaleTimeString(), what, r.decision, why, String(r.status), `${r.latencyMs} ms`]);
    });
    table.dataset.count = String((records || []).length);
  }

  /** A bucket as "4 of 60 left · full at 10:41:03". */
  function bucketText(b) {
    return `${b.remaining} of ${b.limit} left${b.remaining < b.limit ? ` · full at ${new Date(b.reset).toLocaleTimeString()}` : ""}`;
  }

  function renderCaller(_c, state) {
    $("caller-state").hidden = false;
    var plan = state.plan;
    $("caller-plan").textContent =
      plan.name +
      " (" +
      plan.source +
      (plan.keyName ? `, key ${plan.keyName}` : "") +
      (plan.alsoMatches ? `, or ${plan.alsoMatches.join(", ")}` : "") +
      ")";
    $("caller-bucket").textContent = bucketText(state.buckets.free);
    $("caller-ceiling").textContent = bucketText(state.buckets.ceiling);
    var credits = (state.credits || []).reduce(function (a, t) {
      return a + t.credits;
    }, 0);
    $("caller-credits").textContent = `${credits} on ${plural((state.credits || []).length, "token", "tokens")}`;
    $("caller-solves").textContent =
      String(Math.round(state.solves * 100) / 100) + (state.difficulty !== undefined ? ` · next challenge ${state.difficulty} bits` : "");
    $("caller-blocked").textContent = state.blocked ? `until ${new Date(state.blocked.untilMs).toLocaleString()}` : "no";
    $("caller-unblock").disabled = !state.blocked;
    renderRecent(state.recent);
  }

  /** Open the caller's page for the hash's caller: its state from the API, or (a shortened id) what the metrics know. */
  function openCaller(c) {
    $("board").hidden = true;
    $("caller-page").hidden = false;
    $("caller-id").textContent = c.id + (c.route ? ` (route ${c.route})` : "");
    $("caller-error").textContent = "";
    $("caller-action").textContent = "";
    $("caller-routes").replaceChildren();
    $("caller-state").hidden = true;
    var short = /…$/.test(c.id);
    $("caller-full").hidden = !short;
    if (short) {
      // A credential's hash, cut: the metrics' recent decisions only; the state needs the full id.
      renderRecent(
        (lastSnap?.recent || []).filter(function (r) {
          return r.caller === c.id;
        }),
      );
      $("caller-full-id").value = c.id.slice(0, -1);
      return;
    }
    api(callerPath(c)).then(
      function (state) {
        renderCaller(c, state);
      },
      function (err) {
        if (err.message === "unauthorized") return;
        $("caller-error").textContent = err.message;
        renderRecent([]);
        var routes = err.body?.routes;
        if (routes) {
          routes.forEach(function (name) {
            var a = document.createElement("a");
            a.href = callerHash(c.id, name);
            a.textContent = `route ${name}`;
            $("caller-routes").appendChild(a);
          });
        }
      },
    );
  }

  function act(action, body) {
    var c = callerOfHash();
    if (!c) return;
    $("caller-action").textContent = "…";
    api(callerPath(c, action), { method: "POST", body: body }).then(
      function (done) {
        $("caller-action").textContent =
          action === "reset"
            ? done.reset
              ? "buckets reset"
              : "nothing to reset"
            : action === "block"
              ? `blocked until ${new Date(done.blockedUntilMs).toLocaleString()}`
              : done.unblocked
                ? "unblocked"
                : "was not blocked";
        return api(callerPath(c)).then(function (state) {
          renderCaller(c, state);
        });
      },
      function (err) {
        if (err.message !== "unauthorized") $("caller-action").textContent = err.message;
      },
    );
  }

  function route() {
    if ($("login").hidden === false) return;
    var c = callerOfHash();
    if (c) return openCaller(c);
    $("caller-page").hidden = true;
    $("board").hidden = false;
  }

  // ---- session -------------------------------------------------------------------------

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    api("/policy").then(
      function (p) {
        policy = p;
        $("policy").textContent = JSON.stringify(p, null, 2);
      },
      function () {},
    );
    poll();
    timer = setInterval(poll, POLL_MS);
    route();
  }

  function signOut(message) {
    sessionStorage.removeItem(STORAGE_KEY);
    if (timer !== null) clearInterval(timer);
    timer = null;
    $("board").hidden = true;
    $("caller-page").hidden = true;
    $("login").hidden = false;
    $("sign-out").hidden = true;
    $("login-error").textContent = message || "";
    $("status").textContent = "not connected";
  }

  $("login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(STORAGE_KEY, $("token").value.trim());
    $("token").value = "";
    $("login-error").textContent = "";
    start();
  });
  $("sign-out").addEventListener("click", function () {
    signOut("");
  });
  function openRow(ev) {
    var tr = ev.target.closest("tr[data-caller]");
    if (tr) location.hash = callerHash(tr.dataset.caller, null);
  }
  $("top-callers").addEventListener("click", openRow);
  $("top-callers").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") openRow(ev);
  });
  $("caller-full").addEventListener("submit", function (ev) {
    ev.preventDefault();
    location.hash = callerHash($("caller-full-id").value.trim(), null);
  });
  $("caller-reset").addEventListener("click", function () {
    act("reset");
  });
  $("caller-block").addEventListener("click", function () {
    act("block", { seconds: Number($("caller-block-seconds").value) });
  });
  $("caller-unblock").addEventListener("click", function () {
    act("unblock");
  });
  window.addEventListener("hashchange", route);
  if (token()) start();
})();
