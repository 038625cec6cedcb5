/* Phoney dashboard: the owners' overview (GET /overview) from GET /api/overview: calls in the
 * range, outcomes, calls per day (an inline SVG bar chart) and p50/p90 of the AI's latency, in
 * the browser's time zone. It loads again when a call ends or is analysed (live events).
 */
(function () {
  "use strict";
  var P = window.Phoney;
  var el = P.el;
  var form = document.getElementById("overview-filters");
  var problem = document.getElementById("overview-error");
  var byId = function (id) { return document.getElementById(id); };

  function params() {
    var query = new URLSearchParams();
    ["since", "until"].forEach(function (name) {
      if (form.elements[name].value) { query.set(name, form.elements[name].value + (name === "since" ? "T00:00" : "T23:59:59") + offsetText()); }
    });
    if (form.elements.test.checked) { query.set("test", "1"); }
    query.set("tz", String(-new Date().getTimezoneOffset()));
    return query;
  }

  function offsetText() {
    var minutes = -new Date().getTimezoneOffset();
    var sign = minutes < 0 ? "-" : "+";
    minutes = Math.abs(minutes);
    return sign + String(Math.floor(minutes / 60)).padStart(2, "0") + ":" + String(minutes % 60).padStart(2, "0");
  }

  function show(answer) {
    problem.hidden = true;
    byId("overview-calls").textContent = String(answer.calls);
    byId("overview-truncated").hidden = !answer.truncated;
    var days = answer.days || [];
    byId("overview-range").textContent = days.length ? days[0].day + " – " + days[days.length - 1].day : "";
    var outcomes = byId("overview-outcomes").tBodies[0];
    P.clear(outcomes);
    // The dashboard's order (JSON objects come with their keys sorted).
    ["transferred", "voicemail", "resolved", "abandoned", "failed", "live"].filter(function (name) {
      return name in (answer.outcomes || {});
    }).forEach(function (name) {
      var link = el("a", { href: "/?outcome=" + encodeURIComponent(name), text: name });
      outcomes.appendChild(el("tr", { dataset: { outcome: name } },
        el("td", {}, name === "live" ? el("span", { text: "live" }) : link),
        el("td", { className: "count", text: String(answer.outcomes[name]) })));
    });
    var latency = answer.latency || {};
    ["first_token", "answer"].forEach(function (key) {
      var row = document.querySelector("#overview-latency tr[data-key='" + key + "']");
      var found = latency[key] || {};
      row.querySelector(".p50").textContent = P.formatSeconds(found.p50) || "–";
      row.querySelector(".p90").textContent = P.formatSeconds(found.p90) || "–";
    });
    byId("overview-turns").textContent = (latency.turns || 0) + " model turns in the newest " + (latency.calls || 0) + " calls";
    var chart = byId("overview-days");
    P.clear(chart);
    chart.appendChild(P.charts.bars(days.map(function (day) {
      var parts = Object.keys(day.outcomes).filter(function (k) { return day.outcomes[k]; })
        .map(function (k) { return k + " " + day.outcomes[k]; });
      return { label: day.day.slice(5), value: day.calls, title: day.day + ": " + day.calls + " calls" + (parts.length ? " (" + parts.join(", ") + ")" : "") };
    }), { label: "calls per day" }));
    chart.dataset.days = String(days.length);
    return answer.last_event_id || 0;
  }

  function load() {
    return P.api("/api/overview?" + params()).then(show, function (error) {
      problem.textContent = "Could not load the overview: " + error.message;
      problem.hidden = false;
      return 0;
    });
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); load(); });
  var pending = null;
  var feed = P.live({
    onEvent: function (event) {
      if (event.name !== "call.end" && event.name !== "call.analysis") { return; }
      if (pending) { window.clearTimeout(pending); }
      pending = window.setTimeout(function () { pending = null; load(); }, 500);
    },
    onResync: load
  });
  feed.ready.then(load).then(function (after) { feed.start(after); });
})();
