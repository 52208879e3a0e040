/*
 * tollbooth's live dashboard (served by the Worker under <admin path>/assets/dashboard.js;
 * see docs/admin.md). Asks for the admin token, keeps it in sessionStorage (this tab only,
 * never in the URL) and sends it as `Authorization: Bearer` on every fetch. Polls
 * <admin path>/stats every POLL_MS and draws requests per minute by decision with uPlot.
 */
(function () {
  "use strict";
  var POLL_MS = 3000;
  var STORAGE_KEY = "tollbooth-admin-token";
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
  var plot = null;
  var timer = null;

  function token() {
    return sessionStorage.getItem(STORAGE_KEY);
  }

  function api(path) {
    return fetch(base + path, { headers: { authorization: "Bearer " + token() }, cache: "no-store" }).then(function (res) {
      if (res.status === 401) {
        signOut("The token was refused.");
        throw new Error("unauthorized");
      }
      if (!res.ok) throw new Error(path + ": HTTP " + res.status);
      return res.json();
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
    return 'requests_total{decision="' + d + '"}';
  };

  function render(snap) {
    var m = snap.minutes;
    $("n-requests").textContent = String(sumPrefix(m, "requests_total{"));
    $("n-admitted").textContent = String(sum(m, decisionKey("admitted")));
    $("n-payment-required").textContent = String(sum(m, decisionKey("payment_required")));
    $("n-solves").textContent = String(sum(m, 'redeemed_total{scheme="pow"}'));
    $("n-rate-limited").textContent = String(sum(m, decisionKey("rate_limited")));
    $("n-blocked").textContent = String(sum(m, decisionKey("blocked")));
    $("n-latency").textContent = snap.latencyMs.p50 + " / " + snap.latencyMs.p90 + " / " + snap.latencyMs.p99;

    var body = $("top-callers").tBodies[0];
    body.replaceChildren();
    snap.topCallers.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.dataset.caller = c.caller;
      [c.caller, c.requests, c.admitted, c.refused].forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });

    var data = [
      m.map(function (x) {
        return x.startMs / 1000;
      }),
    ];
    DECISIONS.forEach(function (d) {
      data.push(
        m.map(function (x) {
          return x.counters[decisionKey(d[0])] || 0;
        }),
      );
    });
    if (plot === null) {
      var chart = $("chart");
      plot = new uPlot(
        {
          width: Math.max(320, chart.clientWidth || 800),
          height: 280,
          scales: {
            y: {
              range: function (_u, _min, max) {
                return [0, Math.max(1, max)];
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
        data,
        chart,
      );
    } else {
      plot.setData(data);
    }
    $("status").textContent = "live · updated " + new Date(snap.nowMs).toLocaleTimeString();
    document.body.dataset.updated = String(snap.nowMs);
  }

  function poll() {
    api("/stats").then(render, function (err) {
      if (err.message !== "unauthorized") $("status").textContent = "error: " + err.message;
    });
  }

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    api("/policy").then(
      function (p) {
        $("policy").textContent = JSON.stringify(p, null, 2);
      },
      function () {},
    );
    poll();
    timer = setInterval(poll, POLL_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(STORAGE_KEY);
    if (timer !== null) clearInterval(timer);
    timer = null;
    $("board").hidden = true;
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
  if (token()) start();
})();
