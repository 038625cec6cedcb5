/* Phoney dashboard: one call (GET /calls/<CallSid>).
 *
 * Subscribe first, then load GET /api/calls/<CallSid> and replay its events through the same
 * code the live events go through, then let the feed deliver what came after the snapshot's last
 * event. So the transcript, the current node, the path on the graph and the errors are built one
 * way, whether the page was open when things happened or opened later.
 *
 * AI replies stream in: `call.response.partial` carries the whole reply so far and updates one
 * bubble; `call.response` (each spoken part, the last one `final`) replaces it with what was
 * said. `call.timing` puts the turn's latency under the reply it belongs to.
 *
 * A call that converses over ConversationRelay (`call.relay`) gets a relay badge; a reply the
 * caller talked over (`call.interrupt`, or a relay reply whose timings say `interrupted`) is
 * marked, with what they heard of it when Twilio said.
 */
(function () {
  "use strict";
  var P = window.Phoney;
  var el = P.el;
  var callSid = P.config.call_sid;

  var byId = function (id) { return document.getElementById(id); };
  var ui = {
    caller: byId("call-caller"), status: byId("call-status"), flow: byId("call-flow"),
    personality: byId("call-personality"), language: byId("call-language"), node: byId("call-node"), duration: byId("call-duration"),
    offline: byId("call-offline"), relay: byId("call-relay"), transcript: byId("transcript"), transcriptEmpty: byId("transcript-empty"),
    graph: byId("graph"), graphFlow: byId("graph-flow"), errors: byId("errors"), errorsEmpty: byId("errors-empty"),
    target: byId("transfer-target"), transfer: byId("transfer-button"), end: byId("end-button"),
    note: byId("controls-note"), confirm: byId("confirm"), confirmText: byId("confirm-text"),
    confirmYes: byId("confirm-yes"), confirmNo: byId("confirm-no"), result: byId("control-result"),
    analysis: byId("analysis"), analysisStatus: byId("analysis-status"),
    analysisSummary: byId("analysis-summary"), analysisFields: byId("analysis-fields"),
    analysisReason: byId("analysis-reason")
  };

  var call, reply, lastAgent, path, graphView, graphFlow, lastError, targetsLoaded, busy = false;

  function reset() {
    call = { status: "unknown", live: false, started_at: null, ended_at: null, duration: null };
    reply = null;      // the AI reply being streamed or spoken, until the caller speaks again
    lastAgent = null;  // the last agent line, where a call.timing goes
    lastError = null;  // the last error entry, which the error edge taken after it completes
    path = { nodes: new Set(), edgeIds: new Set(), edges: new Set(), current: null };
    P.clear(ui.transcript);
    P.clear(ui.errors);
    ui.analysis.hidden = true;
    ui.transcriptEmpty.hidden = false;
    ui.errorsEmpty.hidden = false;
  }

  // -- header -----------------------------------------------------------------------------------

  function setText(node, value) { node.textContent = value === null || value === undefined || value === "" ? "–" : String(value); }

  function renderHeader() {
    ui.caller.textContent = call.caller || "Call";
    var status = call.live && call.ending ? "ending…" : (call.status || "unknown");
    ui.status.textContent = status;
    ui.status.dataset.status = call.live ? (call.ending ? "ending" : "live") : (call.status || "unknown");
    setText(ui.flow, call.flow);
    var blend = call.blendOf === call.personality ? call.blend || {} : {};  // fallbacks have their own
    var parts = Object.keys(blend).map(function (id) { return id + " " + Math.round(blend[id] * 100) + "%"; });
    setText(ui.personality, call.personality && parts.length ? call.personality + " (" + parts.join(" · ") + ")" : call.personality);
    setText(ui.language, call.language);
    setText(ui.node, path.current);
    renderDuration();
    ui.offline.hidden = !call.offline;
    ui.relay.hidden = !call.relay;
    renderControls();
  }

  function renderDuration() {
    var seconds = null;
    if (typeof call.duration === "number") { seconds = call.duration; }
    else if (typeof call.started_at === "number") {
      seconds = (call.live ? P.serverNow() : (call.ended_at || P.serverNow())) - call.started_at;
    }
    ui.duration.textContent = P.formatDuration(seconds);
  }

  // -- transcript -------------------------------------------------------------------------------

  function offset(at) {
    return typeof at === "number" && typeof call.started_at === "number" ? P.formatDuration(at - call.started_at) : "";
  }

  function line(role, who, event, text, extraClass, before) {
    var item = el("li", { className: "line " + role + (extraClass ? " " + extraClass : ""),
                          dataset: { eventId: String(event.id), role: role } },
      el("div", { className: "meta" }, el("span", { className: "who", text: who }),
         el("span", { className: "when", text: offset(event.at) })),
      el("p", { className: "text", text: text }));
    ui.transcript.insertBefore(item, before || null);
    ui.transcriptEmpty.hidden = true;
    return item;
  }

  function systemLine(event, text, extraClass) {
    var item = el("li", { className: "line system" + (extraClass ? " " + extraClass : ""),
                          dataset: { eventId: String(event.id), role: "system" } },
      el("span", { className: "when", text: offset(event.at) }), el("span", { className: "text", text: text }));
    ui.transcript.appendChild(item);
    ui.transcriptEmpty.hidden = true;
    return item;
  }

  function shorten(text, max) {
    text = String(text);
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function setLineText(item, text) { item.querySelector(".text").textContent = text; }

  function callerText(data) {
    if (data.silence) { return "(silence)"; }
    var parts = [];
    if (data.speech) { parts.push(data.speech); }
    if (data.digits) { parts.push("pressed " + data.digits); }
    return parts.join(" · ") || "(nothing heard)";
  }

  function startReply(event) {
    reply = { parts: [], partial: "", final: false, item: line("agent", "AI", event, "", "reply streaming") };
    reply.item.dataset.kind = "response";
    lastAgent = reply.item;
    return reply;
  }

  function showReply() {
    var spoken = reply.parts.join(" ");
    var streaming = !reply.final && reply.partial.length > spoken.length;
    setLineText(reply.item, streaming ? reply.partial : spoken);
    reply.item.classList.toggle("streaming", !reply.final);
    reply.item.dataset.final = reply.final ? "true" : "false";
  }

  // A partial carries the whole reply so far, so it starts with what was already spoken of it;
  // one that does not is a new reply (the caller spoke over the last one).
  function sameReply(current, text) {
    var spoken = current.parts.join(" ").replace(/\s+/g, " ").trim();
    var head = Math.min(spoken.length, 24);
    return text.replace(/\s+/g, " ").trim().slice(0, head) === spoken.slice(0, head);
  }

  function closeReply(interrupted) {
    if (reply && !reply.final && interrupted) {
      reply.item.classList.remove("streaming");
      reply.item.classList.add("interrupted");
    }
    reply = null;
  }

  // A <Gather> turn is timed from its webhook (first token, first sentence, answer); a relay
  // reply from its model request (first token, first text sent to Twilio, reply done).
  var TIMINGS = [["first_token", "first token"], ["first_sentence", "first sentence"],
                 ["first_sent", "first sent"], ["done", "reply done"], ["answer", "answer"]];

  function addTiming(item, data) {
    if (!item) { return; }
    var bits = [];
    TIMINGS.forEach(function (pair) {
      var text = P.formatSeconds(data[pair[0]]);
      if (text !== null) { bits.push(pair[1] + " " + text); }
    });
    if (data.interrupted === 1) { markInterrupted(item, null); }
    if (!bits.length) { return; }
    var footer = item.querySelector(".timing") || item.appendChild(el("div", { className: "timing" }));
    footer.textContent = "latency: " + bits.join(" · ") + (data.offline ? " · offline" : "") +
      (data.transport === "relay" ? " · relay" : "");
    item.dataset.answer = typeof data.answer === "number" ? String(data.answer) : "";
  }

  // The caller talked over this reply: say so under it, with what they heard when known.
  function markInterrupted(item, heard) {
    if (!item) { return; }
    item.classList.remove("streaming");
    item.classList.add("interrupted");
    item.dataset.interrupted = "true";
    var note = item.querySelector(".interruption") ||
      item.insertBefore(el("div", { className: "interruption" }), item.querySelector(".timing"));
    if (heard !== null && heard !== undefined) { item.dataset.heard = heard; }
    var said = item.dataset.heard;
    note.textContent = said ? "interrupted · the caller heard: “" + said + "”" :
      (said === "" ? "interrupted · the caller heard none of it" : "interrupted");
    // What was sent but not heard is struck through; what was heard stays as it was.
    var text = item.querySelector(".text");
    var full = text.textContent;
    if (said && full.indexOf(said) === 0 && full.length > said.length && !text.querySelector(".unheard")) {
      P.clear(text);
      text.appendChild(document.createTextNode(said));
      text.appendChild(el("span", { className: "unheard", text: full.slice(said.length) }));
      item.classList.add("heard-part");
    }
  }

  // -- errors -----------------------------------------------------------------------------------

  // A flow's own condition or text that failed while the call ran: the call went on, so say
  // what that meant (engine/authoring/run_errors.py says the same in the terminal).
  var FLOW_FAILURES = {
    condition: "condition failed at run time, counted as false",
    template: "text failed at run time, not said"
  };

  // -- the post-call analysis (a call.analysis event, once the call has ended) ------------------

  function fieldText(value) {
    if (value === null || value === undefined) { return "not known"; }
    if (typeof value === "boolean") { return value ? "yes" : "no"; }
    return String(value);
  }

  function renderAnalysis(data) {
    ui.analysis.hidden = false;
    ui.analysisStatus.textContent = data.status || "";
    ui.analysisStatus.dataset.status = data.status || "";
    ui.analysisSummary.textContent = data.summary || "No summary.";
    P.clear(ui.analysisFields);
    Object.keys(data.fields || {}).forEach(function (name) {
      ui.analysisFields.appendChild(el("div", {},
        el("dt", { text: name.replace(/_/g, " ") }), el("dd", { text: fieldText(data.fields[name]) })));
    });
    ui.analysisReason.hidden = !data.reason;
    ui.analysisReason.textContent = data.reason || "";
  }

  function errorTitle(kind) {
    return FLOW_FAILURES[kind] || kind || "error";
  }

  function addError(event) {
    var data = event.data || {};
    var entry = el("li", { className: "error-entry", dataset: { eventId: String(event.id), kind: data.kind || "" } },
      el("span", { className: "when", text: offset(event.at) }),
      el("strong", { text: errorTitle(data.kind) }),
      data.node ? el("span", { className: "muted", text: " at " + data.node }) : null,
      el("div", { className: "detail", text: data.detail || "" }),
      el("div", { className: "edge-taken muted" }));
    ui.errors.appendChild(entry);
    ui.errorsEmpty.hidden = true;
    lastError = entry;
    return entry;
  }

  function errorEdge(event) {
    var data = event.data || {};
    var text = "edge " + data.edge + ": " + data.source + " → " + data.node + (data.strategy ? " (" + data.strategy + ")" : "");
    var entry = lastError;
    if (!entry || entry.querySelector(".edge-taken").textContent) { entry = addError({ id: event.id, at: event.at, data: { kind: data.edge, node: data.source } }); }
    entry.querySelector(".edge-taken").textContent = text;
    return entry;
  }

  // -- graph ------------------------------------------------------------------------------------

  function markGraph() { if (graphView) { graphView.mark(path); } }

  // The graph of the flow version the call runs on (a call keeps its version across reloads);
  // the live one when that version is not known.
  function loadGraph(flow, version) {
    if (!flow || graphFlow === flow) { return; }
    graphFlow = flow;
    ui.graphFlow.textContent = flow;
    var url = "/api/flows/" + encodeURIComponent(flow) + "/graph?format=json";
    P.api(url + (version ? "&version=" + encodeURIComponent(version) : "")).catch(function (error) {
      if (version && error.status === 404) { return P.api(url); }
      throw error;
    }).then(function (graph) {
      graphView = P.graph.draw(ui.graph, graph);
      markGraph();
    }, function (error) {
      P.clear(ui.graph);
      ui.graph.appendChild(el("p", { className: "muted", text: "The flow's graph is not available (" + error.message + ")." }));
    });
  }

  function visit(node) {
    if (!node) { return; }
    path.nodes.add(node);
    path.current = node;
  }

  // -- mood and recordings ----------------------------------------------------------------------

  // The sentiment curve: one point a scored utterance (`call.sentiment`), in [-1, 1].
  var moods = [];
  function addMood(event, data) {
    if (typeof data.score !== "number") { return; }
    if (moods.some(function (p) { return p.id === event.id; })) { return; }
    moods.push({ id: event.id, x: moods.length + 1, y: Math.max(-1, Math.min(1, data.score)),
                 title: "utterance " + (moods.length + 1) + ": " + data.score.toFixed(2) +
                        (typeof data.avg === "number" ? " (average " + data.avg.toFixed(2) + ")" : "") });
    var chart = byId("mood-chart");
    if (!chart) { return; }
    P.clear(chart);
    chart.appendChild(P.charts.line(moods, { min: -1, max: 1, label: "caller's sentiment, utterance by utterance" }));
    chart.dataset.points = String(moods.length);
    byId("mood-empty").hidden = true;
  }

  // Recordings: links to Twilio's RecordingUrl (http or https only, never a script URL).
  function addRecording(event, data) {
    var list = byId("recordings");
    if (!list || !data.url || !/^https?:/i.test(data.url)) { return; }
    if (list.querySelector("li[data-event-id='" + event.id + "']")) { return; }
    var text = "recording" + (typeof data.duration === "number" ? " · " + P.formatDuration(data.duration) : "");
    list.appendChild(el("li", { dataset: { eventId: String(event.id) } },
      el("a", { href: data.url, text: text, target: "_blank", rel: "noopener noreferrer" })));
    byId("recordings-empty").hidden = true;
  }

  // -- events -----------------------------------------------------------------------------------

  function apply(event, replay) {
    var data = event.data || {};
    var touched = null;
    // Follow the conversation only when the reader is at its end (and scroll the transcript
    // alone, never the page).
    var box = ui.transcript;
    var stick = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    switch (event.name) {
      case "call.analysis":
        renderAnalysis(data);
        break;
      case "call.sentiment":
        addMood(event, data);
        break;
      case "call.language":  // a route switched the call's language
        call.language = data.language;
        touched = systemLine(event, "language: " + data.language);
        break;
      case "call.start":
        Object.assign(call, { caller: data.caller, flow: data.flow, personality: data.personality,
                              status: "in-progress", live: true, started_at: event.at });
        visit(data.node);
        if (!replay) { loadGraph(data.flow); }  // a snapshot knows the call's flow version
        touched = systemLine(event, "call from " + (data.caller || "unknown") + " to " + (data.called || "?") + " · flow " + data.flow);
        break;
      case "call.transcript":
        if (reply && !reply.final && !reply.parts.length) {
          // The reply to this very turn: the model streams while the webhook that heard the
          // caller is still running, and the turn is stored when that webhook ends. The caller
          // goes before it.
          touched = line("caller", "Caller", event, callerText(data), data.silence ? "silence" : "", reply.item);
          break;
        }
        closeReply(true);
        touched = line("caller", "Caller", event, callerText(data), data.silence ? "silence" : "");
        break;
      case "call.say":
        closeReply(false);
        touched = lastAgent = line("agent", "Flow", event, data.text || "", "say");
        touched.dataset.kind = "say";
        break;
      case "call.response.partial":
        if (reply && reply.final) {
          // The stream's last partial can land after the final reply it belongs to.
          if (reply.parts.join(" ").length >= (data.text || "").length) { break; }
          reply = null;
        }
        if (reply && !sameReply(reply, data.text || "")) { closeReply(true); }
        if (!reply) { startReply(event); }
        reply.partial = data.text || "";
        showReply();
        touched = reply.item;
        break;
      case "call.response":
        if (!reply || reply.final) { startReply(event); }
        reply.parts.push(data.text || "");
        reply.final = data.final !== false;
        if (data.personality) { call.personality = data.personality; }
        if (data.offline) { call.offline = true; }
        showReply();
        touched = reply.item;
        if (data.timings) { addTiming(touched, data.timings); }
        break;
      case "call.timing":
        addTiming(reply ? reply.item : lastAgent, data);
        touched = reply ? reply.item : lastAgent;
        break;
      case "call.relay":
        if (data.status === "connected") {
          call.relay = true;
          touched = systemLine(event, "relay session connected on " + (data.node || "?"), "relay");
        } else if (data.status === "ended") {
          touched = systemLine(event, "relay session ended" + (data.handoff && data.handoff !== "resume" ? " (" + data.handoff.replace("_", " ") + ")" : "") + (data.reason ? ": " + data.reason : ""), "relay");
        } else {
          touched = systemLine(event, "relay session: the socket closed", "relay");
        }
        break;
      case "call.interrupt":
        touched = reply ? reply.item : lastAgent;
        if (touched && touched.dataset.kind === "response") { markInterrupted(touched, data.heard || ""); }
        else { touched = systemLine(event, "the caller talked over the reply", "relay"); }
        break;
      case "call.node":
        // The edge's id names the one edge taken; events recorded before edges had ids (and the
        // server-wide ceiling's goodbye, which is no edge of the graph) fall back to the ends.
        if (data.edge_id) { path.edgeIds.add(data.edge_id); }
        else if (data.source && data.node) { path.edges.add(P.graph.edgeKey(data.source, data.node, data.edge)); }
        if (data.source) { path.nodes.add(data.source); }
        visit(data.node);
        if (String(data.edge || "").indexOf("error:") === 0) {
          touched = errorEdge(event);
          systemLine(event, "error edge " + data.edge + ": " + data.source + " → " + data.node + (data.strategy ? " (" + data.strategy + ")" : ""), "error");
        } else {
          touched = systemLine(event, "→ " + data.node + " (" + (data.edge || "next") + (data.reason ? ", " + data.reason : "") + ")");
        }
        break;
      case "call.transfer":
        touched = systemLine(event, "transfer to " + (data.to || "?") + ": " + (data.status || "") + (data.source === "dashboard" ? " (from the dashboard)" : ""));
        break;
      case "call.recording":
        touched = systemLine(event, "recording" + (typeof data.duration === "number" ? " of " + data.duration + " s" : ""));
        addRecording(event, data);
        break;
      case "call.error":
        closeReply(true);
        touched = addError(event);
        systemLine(event, (FLOW_FAILURES[data.kind] || "error: " + (data.kind || "?")) + (data.detail ? " — " + shorten(data.detail, 90) : ""), "error");
        break;
      case "call.end":
        closeReply(true);
        if (data.status === "requested") {
          call.ending = true;
          touched = systemLine(event, "end requested from the dashboard");
        } else {
          Object.assign(call, { status: data.status || "completed", live: false, ended_at: event.at });
          if (typeof data.duration === "number") { call.duration = data.duration; }
          touched = systemLine(event, "call ended: " + call.status);
        }
        break;
      default:
        return;
    }
    if (data.node && event.name !== "call.node" && event.name !== "call.start") { visit(data.node); }
    if (!replay) {
      renderHeader();
      markGraph();
      P.shown(touched, event);
      if (stick) { box.scrollTop = box.scrollHeight; }
    }
  }

  function applySnapshot(snapshot) {
    reset();
    Object.assign(call, { caller: snapshot.caller, flow: snapshot.flow, personality: snapshot.personality,
                          status: snapshot.status, live: !!snapshot.live, offline: !!snapshot.offline,
                          relay: !!snapshot.relay });
    var timings = snapshot.timings || {};
    call.started_at = timings.started_at;
    call.ended_at = timings.ended_at;
    call.duration = typeof timings.duration === "number" ? timings.duration : null;
    var events = snapshot.events || [];
    events.forEach(function (event) { apply(event, true); });
    // The summary is the store's word on these; events can only have been partial.
    Object.assign(call, { status: snapshot.status, live: !!snapshot.live, personality: snapshot.personality || call.personality,
                          language: snapshot.language || call.language, blend: snapshot.personality_blend || {},
                          blendOf: snapshot.personality });
    call.started_at = timings.started_at;
    (snapshot.path || []).forEach(function (node) { path.nodes.add(node); });
    if (snapshot.node) { path.current = snapshot.node; path.nodes.add(snapshot.node); }
    loadGraph(snapshot.flow, snapshot.flow_version);
    renderHeader();
    markGraph();
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    return events.length ? events[events.length - 1].id : 0;
  }

  // -- transfer and end, each confirmed in the page -----------------------------------------------

  function renderControls() {
    var can = !!call.live && P.config.control !== false && !busy;
    ui.transfer.disabled = !can || !ui.target.options.length;
    ui.target.disabled = !can || !ui.target.options.length;
    ui.end.disabled = !can;
    if (P.config.control === false) { ui.note.textContent = "Call control needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."; }
    else if (!call.live) { ui.note.textContent = call.status === "unknown" ? "" : "The call has ended."; }
    else if (targetsLoaded && !ui.target.options.length) { ui.note.textContent = "This call's flow declares no transfer targets."; }
    else { ui.note.textContent = ""; }
    if (!call.live) { hideConfirm(); }
  }

  function loadTargets() {
    return P.api("/api/calls/" + encodeURIComponent(callSid) + "/transfer-targets").then(function (answer) {
      P.clear(ui.target);
      (answer.targets || []).forEach(function (target) {
        ui.target.appendChild(el("option", { value: target.to, text: target.label }));
      });
      targetsLoaded = true;
      renderControls();
    }, function () { targetsLoaded = false; });
  }

  var pending = null;

  function askConfirm(text, yesLabel, action) {
    pending = action;
    ui.confirmText.textContent = text;
    ui.confirmYes.textContent = yesLabel;
    ui.confirmYes.className = action.danger ? "danger" : "";
    ui.confirm.hidden = false;
    ui.confirmYes.focus();
  }

  function hideConfirm() {
    pending = null;
    ui.confirm.hidden = true;
  }

  function report(ok, text) {
    ui.result.hidden = false;
    ui.result.className = "result " + (ok ? "ok" : "bad");
    ui.result.textContent = text;
  }

  function act(path, body, done) {
    busy = true;
    renderControls();
    P.api(path, { method: "POST", body: body }).then(function (answer) {
      report(true, done(answer));
    }, function (error) {
      report(false, error.message);
    }).then(function () { busy = false; renderControls(); });
  }

  ui.transfer.addEventListener("click", function () {
    var option = ui.target.options[ui.target.selectedIndex];
    if (!option) { return; }
    var to = option.value;
    askConfirm("Transfer " + (call.caller || "this call") + " to " + option.textContent + "?", "Transfer", {
      run: function () {
        act("/api/transfer-call", { CallSid: callSid, To: to }, function (answer) {
          return "Transfer to " + ((answer && answer.to) || to) + " requested.";
        });
      }
    });
  });

  ui.end.addEventListener("click", function () {
    askConfirm("End the call with " + (call.caller || "this caller") + "? Twilio hangs up at once.", "End call", {
      danger: true,
      run: function () {
        act("/api/end-call", { CallSid: callSid }, function () { return "Hang-up requested."; });
      }
    });
  });

  ui.confirmYes.addEventListener("click", function () {
    var action = pending;
    hideConfirm();
    if (action) { action.run(); }
  });
  ui.confirmNo.addEventListener("click", hideConfirm);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !ui.confirm.hidden) { hideConfirm(); }
  });

  // -- start ------------------------------------------------------------------------------------

  function load() {
    return P.api("/api/calls/" + encodeURIComponent(callSid)).then(function (snapshot) {
      var after = applySnapshot(snapshot);
      loadTargets();
      return after;
    }, function (error) {
      reset();
      renderHeader();
      if (error.status === 404) {
        ui.transcriptEmpty.textContent = "No such call yet: waiting for it to start.";
        return 0;
      }
      ui.transcriptEmpty.textContent = "Could not load the call: " + error.message;
      return 0;
    });
  }

  reset();
  var feed = P.live({
    call: callSid,
    onEvent: function (event) {
      if (event.trimmed) {  // cut to fit Pusher's 10 kB: the store has it whole
        load();
        return;
      }
      apply(event, false);
      if (event.name === "call.start" && !targetsLoaded) { loadTargets(); }
    },
    onResync: load
  });
  feed.ready.then(load).then(function (after) { feed.start(after); });
  window.setInterval(function () { if (call.live) { renderDuration(); } }, 1000);
})();
