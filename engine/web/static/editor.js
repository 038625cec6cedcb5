/* Phoney: the visual call flow editor (GET /flows/<id>).
 *
 * The YAML text is the one source of truth in the page, as the file is on disk. A change made
 * on the graph or in the inspector edits the flow as data and asks the server to write it into
 * the text (POST /api/flows/apply keeps the comments and everything untouched as written); a
 * change typed into the text is checked by the server (POST /api/flows/validate), whose answer
 * carries the flow as data and its graph. Either way the answer's problems are shown on the
 * nodes, on the lines of the text and in a list, and Undo steps back through earlier texts.
 *
 * The graph is drawn by graph.js (the dashboard's layout, every edge kind as `flask flows
 * export` draws it); this file adds selection, drag-to-connect, problem marks and traffic
 * counts on top. The palette's node types, the inspector's fields and the kinds of edge a drag
 * may make all come from the flow JSON Schema (GET /api/flows/schema): each property of the node
 * type's branch gets a field by its JSON type (anything nested is edited as JSON), and its edge
 * fields (next, routes, exits, no_input, on_fail, on_error's kinds) say what it may connect, so
 * a node type or field added to the schema shows up here with no change to this file.
 *
 * Text goes in with textContent only (Phoney.el); nothing from a flow is parsed as HTML.
 */
(function () {
  "use strict";
  var P = window.Phoney, el = P.el, api = P.api;
  var config = P.config;
  var flowId = config.flow;
  var byId = function (id) { return document.getElementById(id); };
  var ui = {
    status: byId("editor-status"), undo: byId("undo"), save: byId("save"), palette: byId("palette"),
    inspector: byId("inspector"), inspectorTitle: byId("inspector-title"), graph: byId("graph"),
    menu: byId("connect-menu"), yaml: byId("yaml"), gutter: byId("yaml-gutter"),
    problems: byId("problems"), period: byId("traffic-period"), tests: byId("traffic-tests"),
    trafficSummary: byId("traffic-summary"), revisions: byId("revisions"), conflict: byId("conflict"),
    conflictDiff: byId("conflict-diff"), callLog: byId("call-log"), callInput: byId("call-input"),
    scenariosLog: byId("scenarios-log"), scenariosSummary: byId("scenarios-summary")
  };
  // Node types, their fields and their ways out all come from the schema once it is read; these
  // starting texts only make a new node of a known type read well.
  var TYPES = [];
  var SKELETON = {
    say: { type: "say", text: "New text." }, gather: { type: "gather", prompt: "What can I help you with?" },
    ai: { type: "ai", instructions: "Help the caller." }, switch: { type: "switch", routes: [] },
    transfer: { type: "transfer", to: "+15550000000" }, record: { type: "record", prompt: "Please leave a message." },
    hangup: { type: "hangup", text: "Goodbye!" }
  };
  // The field of a node that holds an edge of each kind (`on_error` holds one per failure kind).
  var EDGE_FIELDS = { next: "next", routes: "route", exits: "exit", no_input: "no_input", on_fail: "transfer_failed" };
  var state = {
    yaml: "", etag: null, saved: "", based: "", data: null, graph: null, problems: [], elsewhere: [],
    undo: [], selected: null, schema: null, drawn: null, seq: 0, traffic: null, path: null,
    call: null, revisions: []
  };

  function setStatus(text, kind) { ui.status.textContent = text; ui.status.dataset.state = kind; }
  function copy(value) { return JSON.parse(JSON.stringify(value)); }
  function dirty() { return state.yaml !== state.saved; }
  function refreshButtons() {
    ui.undo.disabled = state.undo.length === 0;
    var errors = state.problems.some(function (p) { return p.severity === "error"; });
    ui.save.disabled = !config.can_edit || !dirty() || errors;
  }

  // -- the server's answer to a text: data, graph, problems --------------------------------------

  function take(answer) {
    state.problems = answer.problems || [];
    state.elsewhere = answer.elsewhere || [];
    if (answer.data && typeof answer.data === "object") { state.data = answer.data; }
    if (answer.graph) { state.graph = answer.graph; }
    draw();
    showProblems();
    inspect(state.selected);
    var errors = state.problems.filter(function (p) { return p.severity === "error"; }).length;
    if (errors) { setStatus(errors + (errors === 1 ? " problem" : " problems"), "bad"); }
    else if (!config.can_edit) { setStatus("read only: your role may not change flows", "ok"); }
    else { setStatus(dirty() ? "unsaved changes" : "saved", dirty() ? "dirty" : "ok"); }
    refreshButtons();
  }

  function check() {
    var seq = ++state.seq, text = state.yaml;
    setStatus("checking…", "busy");
    return api("/api/flows/validate", { method: "POST", body: { yaml: text, flow: flowId } })
      .then(function (answer) { if (seq === state.seq) { take(answer); } })
      .catch(function (error) { setStatus(error.message, "bad"); });
  }

  var UNDO_STEPS = 200;
  function remember(text) {
    state.undo.push(text);
    if (state.undo.length > UNDO_STEPS) { state.undo.shift(); }
  }

  function setText(text, keep) {
    if (keep && text !== state.yaml) { remember(state.yaml); }
    state.yaml = text;
    if (ui.yaml.value !== text) { ui.yaml.value = text; }
    gutter();
  }

  // A change to the flow as data: the server writes it into the text, comments kept.
  function change(mutate, renames) {
    if (!state.data) { setStatus("fix the YAML first: the graph edits the flow as data", "bad"); return; }
    var data = copy(state.data);
    mutate(data);
    var seq = ++state.seq;
    setStatus("applying…", "busy");
    api("/api/flows/apply", { method: "POST", body: { yaml: state.yaml, data: data, flow: flowId, renames: renames || {} } })
      .then(function (answer) {
        if (seq !== state.seq) { return; }
        setText(answer.yaml, true);
        take(answer);
      })
      .catch(function (error) { setStatus(error.message, "bad"); });
  }

  var typing = null;
  ui.yaml.addEventListener("input", function () {
    var before = state.yaml;
    if (!typing) { remember(before); }  // one undo step per burst of typing
    clearTimeout(typing);
    state.yaml = ui.yaml.value;
    gutter();
    refreshButtons();
    typing = setTimeout(function () { typing = null; check(); }, 350);
  });
  ui.yaml.addEventListener("scroll", function () { ui.gutter.scrollTop = ui.yaml.scrollTop; });

  ui.undo.addEventListener("click", function () {
    if (!state.undo.length) { return; }
    setText(state.undo.pop(), false);
    check();
  });

  // -- the text's gutter: line numbers, lines with problems marked ------------------------------

  function gutter() {
    var count = state.yaml.split("\n").length;
    var marked = {};
    state.problems.forEach(function (p) { marked[p.line] = p.severity; });
    P.clear(ui.gutter);
    for (var line = 1; line <= count; line++) {
      ui.gutter.appendChild(el("span", { className: marked[line] ? "line " + marked[line] : "line",
                                         dataset: { line: String(line) } }, String(line)));
      ui.gutter.appendChild(document.createTextNode("\n"));
    }
    ui.gutter.scrollTop = ui.yaml.scrollTop;
  }

  function goToLine(line, column) {
    var lines = state.yaml.split("\n"), offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { offset += lines[i].length + 1; }
    ui.yaml.focus();
    ui.yaml.setSelectionRange(offset + Math.max(0, (column || 1) - 1), offset + (lines[line - 1] || "").length);
    var height = ui.yaml.scrollHeight / Math.max(lines.length, 1);
    ui.yaml.scrollTop = Math.max(0, (line - 5) * height);
  }

  function showProblems() {
    gutter();
    P.clear(ui.problems);
    state.problems.concat(state.elsewhere).forEach(function (p) {
      var item = el("li", { className: "problem " + p.severity, dataset: { node: p.node || "", line: String(p.line) } },
                    el("button", { type: "button", className: "link" }, p.path + ":" + p.line + ":" + p.column),
                    " " + (p.node ? "[" + p.node + "] " : "") + p.message);
      item.querySelector("button").addEventListener("click", function () {
        if (p.path === "flows/" + flowId + ".yaml") { goToLine(p.line, p.column); }
        if (p.node) { select({ node: p.node }); }
      });
      ui.problems.appendChild(item);
    });
  }

  // -- the graph --------------------------------------------------------------------------------

  function draw() {
    if (!state.graph) { return; }
    state.drawn = P.graph.draw(ui.graph, state.graph);
    var svgRoot = ui.graph.querySelector("svg");
    var box = svgRoot.viewBox.baseVal;  // drawn at its own size: the panel scrolls a big flow
    if (box && box.width) {
      svgRoot.style.width = Math.round(box.width * 1.25) + "px";  // a little larger than the dashboard's
      svgRoot.style.maxWidth = "none";
      svgRoot.style.maxHeight = "none";
      svgRoot.style.margin = "0 auto";
    }
    var byNode = {};
    state.problems.forEach(function (p) { if (p.node) { (byNode[p.node] = byNode[p.node] || []).push(p); } });
    ui.graph.querySelectorAll("g[data-node]").forEach(function (group) {
      var id = group.getAttribute("data-node");
      var found = byNode[id];
      if (found) {
        group.classList.add(found.some(function (p) { return p.severity === "error"; }) ? "has-error" : "has-warning");
        group.setAttribute("data-problems", String(found.length));
        var note = document.createElementNS("http://www.w3.org/2000/svg", "title");
        note.textContent = found.map(function (p) { return "line " + p.line + ": " + p.message; }).join("\n");
        group.appendChild(note);
        var badge = document.createElementNS("http://www.w3.org/2000/svg", "text");
        badge.setAttribute("x", "118"); badge.setAttribute("y", "-4"); badge.setAttribute("class", "problem-badge");
        badge.textContent = "⚠ " + found.length;
        group.appendChild(badge);
      }
      if (state.selected && state.selected.node === id) { group.classList.add("selected"); }
      group.addEventListener("pointerdown", function (event) { startDrag(event, id, svgRoot); });
    });
    ui.graph.querySelectorAll("path[data-edge-id]").forEach(function (path) {
      var id = path.getAttribute("data-edge-id");
      if (state.selected && state.selected.edge === id) { path.classList.add("selected"); }
      path.addEventListener("click", function (event) { event.stopPropagation(); select({ edge: id }); });
    });
    if (state.path) { state.drawn.mark(state.path); }
    drawTraffic();
  }

  function svgPoint(svgRoot, event) {
    var point = svgRoot.createSVGPoint();
    point.x = event.clientX; point.y = event.clientY;
    return point.matrixTransform(svgRoot.getScreenCTM().inverse());
  }

  function startDrag(event, source, svgRoot) {
    if (event.button !== 0) { return; }
    event.preventDefault();
    var start = svgPoint(svgRoot, event), moved = false, line = null;
    function move(e) {
      var at = svgPoint(svgRoot, e);
      if (!moved && Math.hypot(at.x - start.x, at.y - start.y) < 6) { return; }
      moved = true;
      if (!line) {
        line = document.createElementNS("http://www.w3.org/2000/svg", "line");
        line.setAttribute("class", "drag-line");
        line.setAttribute("x1", start.x); line.setAttribute("y1", start.y);
        svgRoot.appendChild(line);
      }
      line.setAttribute("x2", at.x); line.setAttribute("y2", at.y);
    }
    function up(e) {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      if (line) { line.remove(); }
      if (!moved) { select({ node: source }); return; }
      var hit = document.elementFromPoint(e.clientX, e.clientY);
      var group = hit && hit.closest ? hit.closest("g[data-node]") : null;
      if (group) { chooseKind(source, group.getAttribute("data-node"), e.clientX, e.clientY); }
    }
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  // What a drag from a node of `type` may make: the edge fields its schema branch has.
  function kindsFor(type) {
    var properties = branchFor(type).properties || {}, kinds = [];
    Object.keys(EDGE_FIELDS).forEach(function (field) { if (properties[field]) { kinds.push(EDGE_FIELDS[field]); } });
    if (properties.on_error) {
      Object.keys(resolve(properties.on_error).properties || {}).forEach(function (failure) {
        var policy = resolve(resolve(properties.on_error).properties[failure]);
        if (!policy.properties || policy.properties.then) { kinds.push("error:" + failure); }
      });
    }
    return kinds;
  }

  // A new node of `type`: its starting text, else every required field with a placeholder.
  function skeleton(type) {
    if (SKELETON[type]) { return copy(SKELETON[type]); }
    var fill = function (schema, name) {
      schema = resolve(schema);
      if (schema["const"] !== undefined) { return schema["const"]; }
      if (schema["enum"]) { return schema["enum"][0]; }
      if (schema.oneOf || schema.anyOf) { return fill((schema.oneOf || schema.anyOf)[0], name); }
      var kind = Array.isArray(schema.type) ? schema.type[0] : schema.type;
      if (kind === "object") {
        var made = {};
        (schema.required || []).forEach(function (key) { made[key] = fill((schema.properties || {})[key] || {}, key); });
        return made;
      }
      if (kind === "array") { return []; }
      if (kind === "integer" || kind === "number") { return schema.minimum || 0; }
      if (kind === "boolean") { return false; }
      if (schema.pattern === "^[a-z][a-z0-9_]*$") { return state.data.start; }  // a node (or other id)
      return name === "url" ? "https://example.com/" : "New " + name + ".";
    };
    var made = fill(branchFor(type), type);
    made.type = type;
    return made;
  }

  function chooseKind(source, target, x, y) {
    var node = state.data && state.data.nodes[source];
    var kinds = node ? kindsFor(node.type) : [];
    P.clear(ui.menu);
    ui.menu.appendChild(el("div", { className: "muted" }, source + " → " + target));
    if (!kinds.length) { ui.menu.appendChild(el("div", {}, "a " + (node ? node.type : "") + " node has no way out")); }
    kinds.forEach(function (kind) {
      var button = el("button", { type: "button", dataset: { kind: kind } }, kind);
      button.addEventListener("click", function () { ui.menu.hidden = true; connect(source, target, kind); });
      ui.menu.appendChild(button);
    });
    var cancel = el("button", { type: "button", className: "secondary" }, "cancel");
    cancel.addEventListener("click", function () { ui.menu.hidden = true; });
    ui.menu.appendChild(cancel);
    var box = ui.graph.parentNode.getBoundingClientRect();
    ui.menu.style.left = (x - box.left + 8) + "px";
    ui.menu.style.top = (y - box.top + 8) + "px";
    ui.menu.hidden = false;
  }

  function connect(source, target, kind) {
    change(function (data) {
      var node = data.nodes[source];
      if (kind === "next") { node.next = target; }
      else if (kind === "route") {
        var when = node.type === "switch" ? "true" : node.type === "gather" && (node.input || []).indexOf("dtmf") >= 0
          ? "digits == '" + ((node.routes || []).length + 1) + "'" : "said_any('" + target.replace(/_/g, " ") + "')";
        node.routes = (node.routes || []).concat([{ when: when, to: target }]);
      } else if (kind === "exit") {
        node.exits = node.exits || {};
        node.exits[target] = "When the caller should go to " + target.replace(/_/g, " ") + ".";
      } else if (kind === "no_input") {
        node.no_input = Object.assign({ retries: 1 }, node.no_input || {}, { then: target });
      } else if (kind === "transfer_failed") { node.on_fail = target; }
      else if (kind.indexOf("error:") === 0) {
        node.on_error = node.on_error || {};
        node.on_error[kind.slice(6)] = Object.assign({}, node.on_error[kind.slice(6)] || {}, { then: target });
      }
    });
    select({ node: source });
  }

  function removeEdge(edgeId) {
    var parts = edgeId.split("/"), source = parts[0], kind = parts[1], part = parts[2];
    change(function (data) {
      var node = data.nodes[source];
      if (!node) { return; }
      if (kind === "next") { delete node.next; }
      else if (kind === "route") { (node.routes || []).splice(Number(part), 1); }
      else if (kind === "exit" && node.exits) { delete node.exits[part]; }
      else if (kind === "no_input") { delete node.no_input; }
      else if (kind === "transfer_failed") { delete node.on_fail; }
      else if (kind.indexOf("error:") === 0 && node.on_error) {
        var policy = node.on_error[kind.slice(6)];
        if (policy) {
          if (part === "then") { delete policy.then; } else { delete policy[part === "retry" ? "retry" : part]; }
          if (!Object.keys(policy).length) { delete node.on_error[kind.slice(6)]; }
        }
      }
    });
    select(null);
  }

  // Every place a flow names a node: renaming one renames it there too.
  function renameNode(data, from, to) {
    var swap = function (id) { return id === from ? to : id; };
    var policies = function (holder) {
      if (holder && holder.no_input && holder.no_input.then) { holder.no_input.then = swap(holder.no_input.then); }
      Object.keys((holder && holder.on_error) || {}).forEach(function (kind) {
        var policy = holder.on_error[kind];
        if (policy && policy.then) { policy.then = swap(policy.then); }
      });
    };
    var nodes = {};
    Object.keys(data.nodes).forEach(function (id) { nodes[id === from ? to : id] = data.nodes[id]; });
    data.nodes = nodes;
    data.start = swap(data.start);
    if (data.limits && data.limits.then) { data.limits.then = swap(data.limits.then); }
    policies(data.defaults);
    Object.keys(nodes).forEach(function (id) {
      var node = nodes[id];
      if (node.next) { node.next = swap(node.next); }
      if (node.on_fail) { node.on_fail = swap(node.on_fail); }
      (node.routes || []).forEach(function (route) { route.to = swap(route.to); });
      if (node.exits && Object.prototype.hasOwnProperty.call(node.exits, from)) {
        var exits = {};
        Object.keys(node.exits).forEach(function (key) { exits[swap(key)] = node.exits[key]; });
        node.exits = exits;
      }
      policies(node);
    });
  }

  // Where an edge lives in the flow's data: {fields: [[name, schema, value, set]], target, retarget}
  // or null for an edge the node inherits (from `defaults` or `limits`).
  function edgeSpec(edge) {
    var parts = edge.id.split("/"), kind = parts[1], part = parts[2];
    var node = state.data.nodes[edge.source];
    if (!node) { return null; }
    var nodeIds = Object.keys(state.data.nodes);
    var target = { "enum": nodeIds, description: "The node this edge leads to." };
    var at = function (set) { return function (value) { change(function (data) { set(data.nodes[edge.source], value); }); }; };
    if (kind === "next" && node.next) {
      return [["to", target, node.next, at(function (n, v) { n.next = v; })]];
    }
    if (kind === "transfer_failed" && node.on_fail) {
      return [["to", target, node.on_fail, at(function (n, v) { n.on_fail = v; })]];
    }
    if (kind === "route" && node.routes && node.routes[Number(part)]) {
      var index = Number(part), route = node.routes[index];
      return [["when", { type: "string", description: "The condition (a Jinja2 expression)." }, route.when,
               at(function (n, v) { n.routes[index].when = v; })],
              ["to", target, route.to, at(function (n, v) { n.routes[index].to = v; })]];
    }
    if (kind === "exit" && node.exits && part in node.exits) {
      return [["description", { type: "string", description: "When the model should go there." }, node.exits[part],
               at(function (n, v) { n.exits[part] = v; })]];
    }
    if (kind === "no_input" && node.no_input) {
      return [["retries", { type: "integer" }, node.no_input.retries, at(function (n, v) { n.no_input.retries = v; })],
              ["then", target, node.no_input.then, at(function (n, v) { n.no_input.then = v; })]];
    }
    if (kind.indexOf("error:") === 0 && node.on_error && node.on_error[kind.slice(6)]) {
      var name = kind.slice(6), policy = node.on_error[name];
      if (part === "then") { return [["then", target, policy.then, at(function (n, v) { n.on_error[name].then = v; })]]; }
      if (part === "retry") { return [["retry", { type: "integer" }, policy.retry, at(function (n, v) { n.on_error[name].retry = v; })]]; }
      return [[part, { type: "string" }, policy[part], at(function (n, v) { n.on_error[name][part] = v; })]];
    }
    return null;
  }

  // -- selection and the inspector -------------------------------------------------------------

  function select(what) {
    state.selected = what;
    ui.menu.hidden = true;
    ui.graph.querySelectorAll(".selected").forEach(function (item) { item.classList.remove("selected"); });
    if (what && what.node) {
      var group = ui.graph.querySelector('g[data-node="' + CSS.escape(what.node) + '"]');
      if (group) { group.classList.add("selected"); }
    }
    if (what && what.edge) {
      var path = ui.graph.querySelector('path[data-edge-id="' + CSS.escape(what.edge) + '"]');
      if (path) { path.classList.add("selected"); }
    }
    inspect(what);
  }

  function resolve(schema) {
    var seen = 0;
    while (schema && schema.$ref && seen++ < 10) {
      schema = schema.$ref.replace(/^#\//, "").split("/").reduce(function (at, key) { return at && at[key]; }, state.schema);
    }
    return schema || {};
  }

  function branchFor(type) {
    var node = resolve(state.schema.$defs.node);
    var found = (node.allOf || []).filter(function (rule) {
      return rule["if"] && rule["if"].properties && rule["if"].properties.type && rule["if"].properties.type["const"] === type;
    })[0];
    return found ? resolve(found.then) : node;
  }

  function fieldFor(name, schema, value, onChange, shown) {
    schema = resolve(schema);
    var id = "field-" + name;
    var label = el("label", { "for": id, title: schema.description || "" }, shown || name);
    var input;
    var kind = schema.type || (schema["enum"] ? "enum" : schema["const"] !== undefined ? "const" : "json");
    if (schema["enum"]) {
      input = el("select", { id: id }, el("option", { value: "" }, "–"));
      schema["enum"].forEach(function (option) { input.appendChild(el("option", { value: String(option) }, String(option))); });
      input.value = value === undefined ? "" : String(value);
      input.addEventListener("change", function () { onChange(input.value === "" ? undefined : input.value); });
    } else if (kind === "boolean") {
      input = el("input", { id: id, type: "checkbox" });
      input.checked = value === true;
      input.addEventListener("change", function () { onChange(input.checked ? true : undefined); });
    } else if (kind === "integer" || kind === "number") {
      input = el("input", { id: id, type: "number", step: kind === "integer" ? "1" : "any" });
      input.value = value === undefined ? "" : String(value);
      input.addEventListener("change", function () { onChange(input.value === "" ? undefined : Number(input.value)); });
    } else if (kind === "string") {
      var long = !schema.pattern && !schema.format;
      input = el(long ? "textarea" : "input", { id: id, rows: 2 });
      input.value = value === undefined ? "" : String(value);
      input.addEventListener("change", function () { onChange(input.value === "" ? undefined : input.value); });
    } else {  // lists, mappings, one-of: edited as JSON
      input = el("textarea", { id: id, rows: 3, className: "json" });
      input.value = value === undefined ? "" : JSON.stringify(value);
      input.addEventListener("change", function () {
        if (input.value.trim() === "") { onChange(undefined); return; }
        try { onChange(JSON.parse(input.value)); input.classList.remove("invalid"); }
        catch (error) { input.classList.add("invalid"); setStatus(name + ": not JSON (" + error.message + ")", "bad"); }
      });
    }
    input.dataset.field = name;
    return el("div", { className: "field" }, label, input,
              schema.description ? el("small", { className: "muted" }, schema.description) : null);
  }

  function inspect(what) {
    P.clear(ui.inspector);
    if (!state.schema || !state.data) { return; }
    if (what && what.edge) {
      var edge = (state.graph.edges || []).filter(function (e) { return e.id === what.edge; })[0];
      ui.inspectorTitle.textContent = "Edge";
      if (!edge) { return; }
      ui.inspector.appendChild(el("p", {}, edge.source + " → " + edge.target));
      ui.inspector.appendChild(el("p", { className: "muted" }, edge.kind + (edge.strategy ? " (" + edge.strategy + ")" : "") +
                                  (edge.label ? ": " + edge.label : "")));
      ui.inspector.appendChild(el("p", { className: "muted" }, "id " + edge.id));
      var spec = edgeSpec(edge);
      if (!spec) {
        ui.inspector.appendChild(el("p", { className: "muted" }, "Inherited from the flow's defaults or limits: edit them in the flow's fields."));
        return;
      }
      spec.forEach(function (field) {
        ui.inspector.appendChild(fieldFor("edge-" + field[0], field[1], field[2], function (value) {
          if (value !== undefined) { field[3](value); }
        }, field[0]));
      });
      var del = el("button", { type: "button", className: "danger", id: "delete-edge" }, "Delete edge");
      del.addEventListener("click", function () { removeEdge(edge.id); });
      ui.inspector.appendChild(del);
      return;
    }
    if (what && what.node && state.data.nodes && state.data.nodes[what.node]) {
      var nodeId = what.node, node = state.data.nodes[nodeId];
      ui.inspectorTitle.textContent = "Node " + nodeId;
      ui.inspector.appendChild(fieldFor("id", { type: "string", pattern: "^[a-z][a-z0-9_]*$",
                                                description: "The node's id; renaming it renames it wherever the flow names it." },
                                        nodeId, function (value) {
        if (!value || value === nodeId) { return; }
        if (!/^[a-z][a-z0-9_]*$/.test(value) || state.data.nodes[value]) {
          setStatus("'" + value + "' cannot be this node's id (lower case, digits, _; not taken)", "bad");
          return;
        }
        var renames = {};
        renames[nodeId] = value;
        change(function (data) { renameNode(data, nodeId, value); }, renames);
        state.selected = { node: value };
      }));
      var branch = branchFor(node.type);
      var properties = Object.assign({ type: resolve(state.schema.$defs.node).properties.type }, branch.properties || {});
      Object.keys(properties).forEach(function (name) {
        var schema = name === "type" ? { "enum": TYPES, description: properties.type.description } : properties[name];
        ui.inspector.appendChild(fieldFor(name, schema, node[name], function (value) {
          change(function (data) {
            if (value === undefined) { delete data.nodes[nodeId][name]; } else { data.nodes[nodeId][name] = value; }
          });
        }));
      });
      var remove = el("button", { type: "button", className: "danger", id: "delete-node" }, "Delete node");
      remove.addEventListener("click", function () {
        change(function (data) { delete data.nodes[nodeId]; });
        select(null);
      });
      var start = el("button", { type: "button", className: "secondary" }, "Make it the start");
      start.addEventListener("click", function () { change(function (data) { data.start = nodeId; }); });
      ui.inspector.appendChild(el("div", { className: "inspector-actions" }, start, remove));
      return;
    }
    ui.inspectorTitle.textContent = "Flow";
    var top = state.schema.properties || {};
    Object.keys(top).forEach(function (name) {
      if (name === "nodes" || name === "$schema") { return; }
      ui.inspector.appendChild(fieldFor(name, top[name], state.data[name], function (value) {
        change(function (data) { if (value === undefined) { delete data[name]; } else { data[name] = value; } });
      }));
    });
  }

  ui.graph.addEventListener("click", function (event) {
    if (event.target === ui.graph || event.target.tagName === "svg") { select(null); }
  });

  function palette() {
    TYPES.forEach(function (type) {
      var button = el("button", { type: "button", className: "secondary", dataset: { type: type } }, "+ " + type);
      button.addEventListener("click", function () { addNode(type); });
      ui.palette.appendChild(button);
    });
  }

  function addNode(type) {
    if (!state.data) { setStatus("fix the YAML first", "bad"); return; }
    var base = type === "hangup" ? "goodbye" : type, id = base, n = 2;
    while (state.data.nodes[id]) { id = base + "_" + n++; }
    var asked = window.prompt("Id of the new " + type + " node", id);
    if (asked === null) { return; }
    asked = asked.trim();
    if (!/^[a-z][a-z0-9_]*$/.test(asked) || state.data.nodes[asked]) {
      setStatus("'" + asked + "' cannot be a new node id (lower case, digits, _; not taken)", "bad");
      return;
    }
    change(function (data) { data.nodes[asked] = skeleton(type); });
    select({ node: asked });
  }

  // -- save, conflicts, revisions -------------------------------------------------------------

  function loadSource() {
    return api("/api/flows/" + encodeURIComponent(flowId) + "/source").then(function (source) {
      state.etag = source.etag;
      state.saved = source.yaml;
      state.based = source.yaml;
      setText(source.yaml, false);
      return check();
    });
  }

  ui.save.addEventListener("click", function () {
    if (typing) {  // a check still waiting on the typing: run it first, then save what it saw
      clearTimeout(typing);
      typing = null;
      check().then(function () { if (!ui.save.disabled) { ui.save.click(); } });
      return;
    }
    setStatus("saving…", "busy");
    state.seq++;  // a check still on its way answers for the text being saved: the save's answer wins
    var text = state.yaml;
    api("/api/flows/" + encodeURIComponent(flowId), { method: "PUT", body: { yaml: text, base: state.etag, base_yaml: state.based } })
      .then(function (answer) {
        state.etag = answer.etag;
        state.saved = text;
        state.based = text;
        ui.conflict.hidden = true;
        setStatus("saved: revision " + answer.revision.number + (answer.live_version ? ", live as " + answer.live_version : ""), "ok");
        refreshButtons();
        loadRevisions();
      })
      .catch(function (error) {
        if (error.status === 409 && error.body) { showConflict(error.body); return; }
        if (error.status === 422 && error.body) { take(error.body); }
        setStatus(error.message, "bad");
      });
  });

  function showConflict(body) {
    state.conflict = body;
    var who = (body.since || []).map(function (revision) {
      return "#" + revision.number + " " + revision.note + " by " + revision.who + " at " + new Date(revision.at * 1000).toLocaleString();
    });
    ui.conflictDiff.textContent = (who.length ? who.join("\n") + "\n\n" : "") +
      (body.changes || ("(what they started from is not known: from their version to yours)\n" + (body.yours || "")));
    ui.conflict.hidden = false;
    setStatus("not saved: someone else saved first", "bad");
  }

  byId("conflict-rebase").addEventListener("click", function () {
    if (!state.conflict) { return; }
    state.etag = state.conflict.current.etag;  // the next save is based on their version
    state.based = state.conflict.current.yaml;
    ui.conflict.hidden = true;
    setStatus("based on their version now: check, then save", "dirty");
    refreshButtons();
  });
  byId("conflict-theirs").addEventListener("click", function () {
    if (!state.conflict) { return; }
    state.etag = state.conflict.current.etag;
    state.saved = state.conflict.current.yaml;
    state.based = state.conflict.current.yaml;
    setText(state.conflict.current.yaml, true);  // Undo brings my text back
    ui.conflict.hidden = true;
    check();
  });

  function loadRevisions() {
    return api("/api/flows/" + encodeURIComponent(flowId) + "/revisions").then(function (answer) {
      P.clear(ui.revisions);
      answer.revisions.forEach(function (revision) {
        var diff = el("pre", { className: "diff", hidden: true }, revision.diff || "(no change)");
        var show = el("button", { type: "button", className: "link" }, "diff");
        show.addEventListener("click", function () { diff.hidden = !diff.hidden; });
        var restore = el("button", { type: "button", className: "secondary", dataset: { restore: String(revision.number) },
                                     disabled: config.can_edit ? null : "disabled" }, "Restore");
        restore.addEventListener("click", function () { restoreRevision(revision.number); });
        ui.revisions.appendChild(el("li", { dataset: { revision: String(revision.number) } },
          el("strong", {}, "#" + revision.number), " ", revision.note, " · ", revision.who, " · ",
          new Date(revision.at * 1000).toLocaleString(), " ", show, " ", restore, diff));
      });
      if (!answer.revisions.length) { ui.revisions.appendChild(el("li", { className: "muted" }, "No revisions yet: the first save makes one.")); }
    });
  }

  function restoreRevision(number) {
    if (dirty() && !window.confirm("Your unsaved changes will be replaced (Undo brings them back). Restore revision " + number + "?")) { return; }
    api("/api/flows/" + encodeURIComponent(flowId) + "/revisions/" + number + "/restore",
        { method: "POST", body: { base: state.etag } })
      .then(function (answer) {
        remember(state.yaml);
        return loadSource().then(function () {
          setStatus("restored revision " + number + " as revision " + answer.revision.number, "ok");
          loadRevisions();
        });
      })
      .catch(function (error) {
        if (error.status === 409 && error.body) { showConflict(error.body); return; }
        setStatus(error.message, "bad");
      });
  }

  // -- traffic ----------------------------------------------------------------------------------

  function loadTraffic() {
    var period = ui.period.value;
    if (!period) { state.traffic = null; ui.trafficSummary.textContent = ""; draw(); return; }
    api("/api/flows/" + encodeURIComponent(flowId) + "/traffic?since=" + encodeURIComponent(period) +
        (ui.tests.checked ? "&tests=1" : ""))
      .then(function (answer) {
        state.traffic = answer;
        ui.trafficSummary.textContent = answer.calls + (answer.calls === 1 ? " call" : " calls") + (answer.truncated ? " (the most recent only)" : "");
        draw();
      })
      .catch(function (error) { ui.trafficSummary.textContent = error.message; });
  }

  function drawTraffic() {
    var traffic = state.traffic;
    if (!traffic) { return; }
    var svgRoot = ui.graph.querySelector("svg");
    if (!svgRoot) { return; }
    var layer = document.createElementNS("http://www.w3.org/2000/svg", "g");
    layer.setAttribute("class", "traffic");
    ui.graph.querySelectorAll("path[data-edge-id]").forEach(function (path) {
      var count = traffic.edges[path.getAttribute("data-edge-id")];
      if (count === undefined) { return; }
      var at = path.getPointAtLength(path.getTotalLength() / 2);
      var text = document.createElementNS("http://www.w3.org/2000/svg", "text");
      text.setAttribute("x", at.x); text.setAttribute("y", at.y - 3);
      text.setAttribute("class", "traffic-count" + (count ? "" : " zero"));
      text.setAttribute("data-edge-count", path.getAttribute("data-edge-id"));
      text.textContent = String(count);
      path.style.strokeWidth = String(1.5 + Math.min(6, Math.log2(1 + count)));
      layer.appendChild(text);
    });
    ui.graph.querySelectorAll("g[data-node]").forEach(function (group) {
      var stats = traffic.nodes[group.getAttribute("data-node")];
      if (!stats) { return; }
      var text = document.createElementNS("http://www.w3.org/2000/svg", "text");
      text.setAttribute("x", "2"); text.setAttribute("y", "52"); text.setAttribute("class", "traffic-node");
      text.textContent = stats.entered + " in" + (stats.dropped ? " · " + stats.dropped + " dropped" : "") +
                         (stats.live ? " · " + stats.live + " live" : "");
      group.appendChild(text);
      group.classList.toggle("live-here", stats.live > 0);  // where calls are right now
    });
    svgRoot.appendChild(layer);
  }

  ui.period.addEventListener("change", loadTraffic);
  ui.tests.addEventListener("change", loadTraffic);
  var liveTimer = null;
  var feed = P.live({ onEvent: function (event) {  // live calls move: redraw their positions soon
    if (!state.traffic || (event.name !== "call.node" && event.name !== "call.end" && event.name !== "call.start")) { return; }
    clearTimeout(liveTimer);
    liveTimer = setTimeout(loadTraffic, 500);
  }, onResync: function () { if (state.traffic) { loadTraffic(); } } });
  feed.ready.then(function () { return api("/api/calls?limit=1"); })  // events from now on
    .then(function (answer) { feed.start(answer.last_event_id); });

  // -- call this flow ---------------------------------------------------------------------------

  var callButtons = ["call-input", "call-say", "call-press", "call-silence", "call-dial", "call-dial-end", "call-record", "call-hangup"];
  function log(line, kind) { ui.callLog.appendChild(el("div", { className: kind || "" }, line)); ui.callLog.scrollTop = ui.callLog.scrollHeight; }

  function showCall(answer) {
    state.call = answer;
    answer.heard.forEach(function (text) { log("agent: " + text, "agent"); });
    state.path = { nodes: new Set(answer.path || []), edgeIds: new Set(), edges: new Set(), current: answer.node };
    if (state.drawn) { state.drawn.mark(state.path); }
    var waiting = answer.ended ? "the call ended" : "waiting for " + answer.waiting + (answer.listens ? " (" + answer.listens + ")" : "");
    log("— " + waiting + (answer.node ? " at " + answer.node : ""), "muted");
    if (answer.waiting === "relay") {
      log("This node talks over ConversationRelay, a WebSocket the page cannot open: try it with flask call " + flowId + ".", "error");
    }
    callButtons.forEach(function (id) { byId(id).disabled = answer.ended; });
  }

  function move(body, shown) {
    if (!state.call) { return; }
    if (shown) { log("caller: " + shown, "caller"); }
    api("/api/flows/" + encodeURIComponent(flowId) + "/calls/" + state.call.call_sid, { method: "POST", body: body })
      .then(showCall)
      .catch(function (error) { log("error: " + error.message, "error"); });
  }

  byId("call-ring").addEventListener("click", function () {
    P.clear(ui.callLog);
    if (dirty()) { log("(the live version rings: save to call your changes)", "muted"); }
    api("/api/flows/" + encodeURIComponent(flowId) + "/calls", { method: "POST", body: {} })
      .then(function (answer) { log("ringing " + flowId + " (" + answer.call_sid + ")", "muted"); showCall(answer); ui.callInput.focus(); })
      .catch(function (error) { log("error: " + error.message, "error"); });
  });
  function sayOrPress() {
    var text = ui.callInput.value.trim();
    ui.callInput.value = "";
    if (/^#\S+$/.test(text)) { move({ action: "press", digits: text.slice(1) }, "pressed " + text.slice(1)); }
    else { move({ action: "say", text: text }, text); }
  }
  byId("call-say").addEventListener("click", sayOrPress);
  ui.callInput.addEventListener("keydown", function (event) { if (event.key === "Enter") { sayOrPress(); } });
  byId("call-press").addEventListener("click", function () {
    var digits = ui.callInput.value.trim().replace(/^#/, ""); ui.callInput.value = "";
    move({ action: "press", digits: digits }, "pressed " + digits);
  });
  byId("call-silence").addEventListener("click", function () { move({ action: "silence" }, "(silence)"); });
  byId("call-dial-end").addEventListener("click", function () {
    var status = byId("call-dial").value; move({ action: "dial", status: status }, "(the dialled line: " + status + ")");
  });
  byId("call-record").addEventListener("click", function () { move({ action: "record", seconds: 10 }, "(leaves a 10 second message)"); });
  byId("call-hangup").addEventListener("click", function () { move({ action: "hangup" }, "(hangs up)"); });

  // -- scenarios --------------------------------------------------------------------------------

  byId("scenarios-run").addEventListener("click", function () {
    ui.scenariosSummary.textContent = "running…";
    P.clear(ui.scenariosLog);
    if (dirty()) { ui.scenariosLog.appendChild(el("div", { className: "muted" }, "(the saved version runs: save to test your changes)")); }
    api("/api/flows/" + encodeURIComponent(flowId) + "/scenarios", { method: "POST", body: {} })
      .then(function (answer) {
        (answer.results || []).forEach(function (result) {
          result.lines.forEach(function (line) { ui.scenariosLog.appendChild(el("div", { className: result.passed ? "pass" : "fail" }, line)); });
        });
        ui.scenariosSummary.textContent = answer.message || (answer.passed + " passed, " + answer.failed +
          " failed; edge coverage " + answer.coverage.text);
        state.path = { nodes: new Set(), edgeIds: new Set(Object.keys(answer.coverage.taken)), edges: new Set(), current: null };
        if (state.drawn) { state.drawn.mark(state.path); }
      })
      .catch(function (error) {
        ui.scenariosSummary.textContent = error.message;
        ((error.body && error.body.problems) || []).forEach(function (line) { ui.scenariosLog.appendChild(el("div", { className: "fail" }, line)); });
      });
  });

  // -- tabs, start -------------------------------------------------------------------------------

  document.querySelectorAll(".tab").forEach(function (tab) {
    tab.addEventListener("click", function () {
      document.querySelectorAll(".tab").forEach(function (other) { other.classList.toggle("active", other === tab); });
      document.querySelectorAll(".tab-panel").forEach(function (panel) { panel.hidden = panel.id !== "tab-" + tab.dataset.tab; });
      if (tab.dataset.tab === "revisions") { loadRevisions(); }
    });
  });
  document.addEventListener("keydown", function (event) {
    var typingIn = /^(INPUT|TEXTAREA|SELECT)$/.test((event.target && event.target.tagName) || "");
    var key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && key === "s") {  // saves from anywhere, the text too
      event.preventDefault();
      if (!ui.save.disabled) { ui.save.click(); }
      return;
    }
    if (typingIn) { return; }  // the text's own undo and delete are the browser's
    if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); ui.undo.click(); }
    else if ((key === "delete" || key === "backspace") && state.selected) {
      event.preventDefault();
      var button = byId(state.selected.node ? "delete-node" : "delete-edge");
      if (button) { button.click(); }
    } else if (key === "escape") { select(null); }
  });
  window.addEventListener("beforeunload", function (event) { if (dirty()) { event.preventDefault(); event.returnValue = ""; } });

  if (!config.can_edit) { setStatus("read only: your role may not change flows", "ok"); }
  if (!config.can_call) {
    ["call-ring", "scenarios-run"].forEach(function (id) { byId(id).disabled = true; });
  }
  api("/api/flows/schema").then(function (schema) {
    state.schema = schema;
    TYPES = resolve(schema.$defs.node).properties.type["enum"].slice();
    palette();
    return loadSource();
  })
    .then(loadRevisions)
    .catch(function (error) { setStatus(error.message, "bad"); });
  window.PhoneyEditor = { state: state };  // for the browser tests to wait on
})();
