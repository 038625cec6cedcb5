/* Phoney dashboard: the list of live and recent calls (GET /), kept up to date by live events.
 *
 * The list starts from GET /api/calls, whose `last_event_id` (read before the list) is where the
 * live feed takes over; each event updates its call's row in place. An event for a call the page
 * does not know (started before the list was read, or past its limit) fetches that call once.
 * Test calls (`flask call`, scenario runs: `test` in the summary, or a `call.test` event) are
 * marked, and hidden while "show test calls" is unchecked (remembered in localStorage). A call
 * seen holding a ConversationRelay session (`call.relay`, or `relay` in its details) gets a
 * relay badge.
 *
 * Owners read each call's date and time, caller, outcome, summary, mood (the average sentiment)
 * and duration, and narrow the list with the filter form (dates, flow, outcome, words of the
 * transcript, test calls): the form's values are GET /api/calls' filters, kept in the page's
 * URL, and "More calls" follows the answer's `next`. While a filter is set, only calls the
 * list holds are updated live; new calls appear when no filter but "test calls" is set. The
 * CSV link exports what the filters select.
 */
(function () {
  "use strict";
  var P = window.Phoney;
  var el = P.el;

  var calls = new Map();  // call_sid -> call summary (as /api/calls gives it)
  var rows = new Map();   // call_sid -> <tr>
  var fetching = new Set();
  var body = document.getElementById("calls-body");
  var empty = document.getElementById("calls-empty");
  var count = document.getElementById("calls-count");
  var problem = document.getElementById("calls-error");
  var showTests = document.getElementById("show-test-calls");
  var form = document.getElementById("calls-filters");
  var more = document.getElementById("calls-more");
  var csv = document.getElementById("calls-csv");
  var nextPage = null;
  var SHOW_TESTS_KEY = "phoney.showTestCalls";
  var FILTERS = ["since", "until", "flow", "outcome", "q"];
  var fromUrl = new URLSearchParams(window.location.search);
  FILTERS.forEach(function (name) {
    if (form && form.elements[name] && fromUrl.get(name)) { form.elements[name].value = fromUrl.get(name); }
  });
  try {
    if (showTests) { showTests.checked = fromUrl.has("test") ? fromUrl.get("test") === "1" : window.localStorage.getItem(SHOW_TESTS_KEY) === "1"; }
  } catch (ignored) { /* storage off: hidden by default */ }

  // The filters as GET /api/calls reads them (test=0 while test calls are hidden).
  function filterParams() {
    var params = new URLSearchParams();
    FILTERS.forEach(function (name) {
      var field = form && form.elements[name];
      if (field && field.value.trim()) { params.set(name, field.value.trim()); }
    });
    params.set("test", testsShown() ? "1" : "0");
    return params;
  }

  function filtered() {
    var params = filterParams();
    params.delete("test");
    return Array.from(params.keys()).length > 0;
  }

  function moodText(mood) {
    if (typeof mood !== "number") { return null; }
    var word = mood >= 0.3 ? "happy" : mood <= -0.3 ? "upset" : "neutral";
    return word + " (" + (mood > 0 ? "+" : "") + mood.toFixed(2) + ")";
  }

  function testsShown() { return !!showTests && showTests.checked; }

  function duration(call) {
    var t = call.timings || {};
    if (!call.live) {
      if (typeof t.duration === "number") { return t.duration; }
      if (typeof t.ended_at === "number" && typeof t.started_at === "number") { return t.ended_at - t.started_at; }
      return t.elapsed;
    }
    return typeof t.started_at === "number" ? P.serverNow() - t.started_at : null;
  }

  function statusText(call) {
    if (call.ending && call.live) { return "ending…"; }
    return call.status || "unknown";
  }

  function cell(text, className) {
    return el("td", { className: className, text: text === null || text === undefined || text === "" ? "–" : text });
  }

  function renderRow(call) {
    var row = rows.get(call.call_sid);
    var fresh = !row;
    if (fresh) {
      row = el("tr", { dataset: { callSid: call.call_sid } });
      rows.set(call.call_sid, row);
    }
    P.clear(row);
    var link = el("a", { href: "/calls/" + encodeURIComponent(call.call_sid), text: call.caller || "unknown caller" });
    var callerCell = el("td", { className: "caller" }, link);
    if (call.errors) { callerCell.appendChild(el("span", { className: "badge bad", title: "errors in this call", text: String(call.errors) })); }
    if (call.test) { callerCell.appendChild(el("span", { className: "badge test", title: "a test call (" + call.test + ")", text: "test" })); }
    if (call.relay) { callerCell.appendChild(el("span", { className: "badge relay", title: "converses over ConversationRelay", text: "relay" })); }
    row.appendChild(cell(P.formatDateTime((call.timings || {}).started_at), "started"));
    row.appendChild(callerCell);
    row.appendChild(cell(call.flow, "flow"));
    row.appendChild(cell(call.node, "node"));
    var outcome = call.outcome ? el("span", { className: "pill outcome", text: call.outcome, dataset: { outcome: call.outcome } }) : null;
    row.appendChild(outcome ? el("td", { className: "outcome" }, outcome) : cell(call.live ? "live" : null, "outcome"));
    var summary = cell(call.summary, "summary");
    if (call.summary) { summary.title = call.summary; }
    row.appendChild(summary);
    var mood = cell(moodText(call.mood), "mood");
    if (typeof call.mood === "number") { mood.dataset.mood = String(call.mood); }
    row.appendChild(mood);
    row.appendChild(cell(P.formatDuration(duration(call)), "duration"));
    var status = el("span", { className: "pill", text: statusText(call), dataset: { status: call.live ? (call.ending ? "ending" : "live") : (call.status || "unknown") } });
    row.appendChild(el("td", { className: "status" }, status));
    row.classList.toggle("live", !!call.live);
    row.classList.toggle("test-call", !!call.test);
    row.hidden = !!call.test && !testsShown();
    return row;
  }

  function order(a, b) {
    if (!!a.live !== !!b.live) { return a.live ? -1 : 1; }
    if (filtered()) { return 0; }  // the server's order, page after page
    return ((b.timings || {}).started_at || 0) - ((a.timings || {}).started_at || 0);
  }

  function renderAll() {
    var sorted = Array.from(calls.values()).sort(order);
    sorted.forEach(function (call) {
      var row = rows.get(call.call_sid) || renderRow(call);
      row.hidden = !!call.test && !testsShown();
      body.appendChild(row);
    });
    sorted = sorted.filter(function (call) { return !call.test || testsShown(); });
    empty.hidden = sorted.length > 0;
    var liveCount = sorted.filter(function (call) { return call.live; }).length;
    count.textContent = sorted.length ? liveCount + " live · " + sorted.length + " shown" : "";
  }

  function upsert(call) {
    var known = calls.get(call.call_sid);
    var merged = Object.assign({}, known || {}, call);
    merged.timings = Object.assign({}, (known || {}).timings || {}, call.timings || {});
    calls.set(call.call_sid, merged);
    return renderRow(merged);
  }

  function fetchCall(callSid) {
    if (fetching.has(callSid)) { return; }
    fetching.add(callSid);
    P.api("/api/calls/" + encodeURIComponent(callSid)).then(function (found) {
      var summary = {};
      ["call_sid", "status", "flow", "node", "personality", "caller", "called", "live", "timings", "test", "relay", "outcome", "mood", "summary"].forEach(function (key) { summary[key] = found[key]; });
      P.shown(upsert(summary), null);
      renderAll();
    }, function () { /* gone or not stored yet: the next event tries again */ })
      .then(function () { fetching.delete(callSid); });
  }

  function onEvent(event) {
    var sid = event.call_sid;
    var data = event.data || {};
    var known = calls.get(sid);
    var change = null;
    if (event.name === "call.start" && filtered()) {
      return;  // a new call: not known to match the filters
    } else if (event.name === "call.start") {
      change = { call_sid: sid, caller: data.caller, flow: data.flow, personality: data.personality,
                 node: data.node, called: data.called, status: "in-progress", live: true,
                 timings: { started_at: event.at, updated_at: event.at } };
    } else if (!known && filtered()) {
      return;
    } else if (!known) {
      fetchCall(sid);
      return;
    } else {
      change = { call_sid: sid, timings: { updated_at: event.at } };
      if (data.node) { change.node = data.node; }
      if (event.name === "call.error") { change.errors = (known.errors || 0) + 1; }
      if (event.name === "call.test") { change.test = data.source || "test"; }
      if (event.name === "call.relay") { change.relay = true; }
      if (event.name === "call.end" || event.name === "call.analysis") { refetch(sid); }
      if (event.name === "call.response" && data.personality) { change.personality = data.personality; }
      if (event.name === "call.end") {
        if (data.status === "requested") {
          change.ending = true;  // the dashboard asked Twilio; the status callback confirms
        } else {
          change.status = data.status || "completed";
          change.live = false;
          change.timings.ended_at = event.at;
          if (typeof data.duration === "number") { change.timings.duration = data.duration; }
        }
      }
    }
    P.shown(upsert(change), event);
    renderAll();
  }

  // The outcome and summary are the server's (kept when the call ends or is analysed).
  function refetch(sid) {
    window.setTimeout(function () { fetchCall(sid); }, 300);
  }

  function showPage(answer, replace) {
    problem.hidden = true;
    if (replace) {
      calls.clear(); rows.clear(); P.clear(body);
    }
    (answer.calls || []).forEach(upsert);
    nextPage = answer.next || null;
    if (more) { more.hidden = !nextPage; }
    renderAll();
    return answer.last_event_id || 0;
  }

  function failed(error) {
    problem.textContent = "Could not load the calls: " + error.message;
    problem.hidden = false;
    return 0;
  }

  function load() {
    var params = filterParams();
    if (csv) { csv.href = "/api/calls.csv" + (params.toString() ? "?" + params : ""); }
    return P.api("/api/calls" + (params.toString() ? "?" + params : "")).then(function (answer) {
      return showPage(answer, true);
    }, failed);
  }

  function apply() {
    var kept = filterParams();
    if (kept.get("test") === "0") { kept.delete("test"); }  // hidden is the page's default
    var shown = kept.toString();
    window.history.replaceState(null, "", window.location.pathname + (shown ? "?" + shown : ""));
    return load();
  }

  if (showTests) {
    showTests.addEventListener("change", function () {
      try { window.localStorage.setItem(SHOW_TESTS_KEY, showTests.checked ? "1" : "0"); } catch (ignored) { /* not kept */ }
      apply();
    });
  }
  if (form) {
    form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
    form.addEventListener("reset", function () { window.setTimeout(apply, 0); });
  }
  if (more) {
    more.addEventListener("click", function () {
      if (!nextPage) { return; }
      P.api(nextPage).then(function (answer) { showPage(answer, false); }, failed);
    });
  }

  var feed = P.live({ onEvent: onEvent, onResync: load });
  feed.ready.then(load).then(function (after) { feed.start(after); });

  // Durations of live calls tick without events.
  window.setInterval(function () {
    calls.forEach(function (call) {
      if (!call.live) { return; }
      var row = rows.get(call.call_sid);
      var target = row && row.querySelector("td.duration");
      if (target) { target.textContent = P.formatDuration(duration(call)); }
    });
  }, 1000);
})();
