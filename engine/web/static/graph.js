/* Phoney dashboard: a flow's graph as inline SVG, with a call's path on it.
 *
 * Input: GET /api/flows/<id>/graph?format=json = {flow, start, nodes: [{id, type, terminal,
 * description}], edges: [{id, source, target, kind, label, strategy, dashed}]}.
 *
 * Layout, kept simple on purpose (flows are small): each node's row is its BFS depth from the
 * start node (nodes the start cannot reach go on a last row); within a row nodes keep BFS order,
 * then one barycentre pass puts each under the mean position of the nodes leading to it. Edges
 * going down are curves from bottom to top; edges going up or sideways (a hold node back to its
 * ai node) bend around the left; self-loops (retry, fallback personality, Twilio voice on an
 * error edge) are stacked loops on the right, labelled with their strategy.
 *
 * Phoney.graph.draw(container, graph) returns {mark(path)} where path = {nodes: Set of ids,
 * edgeIds: Set of edge ids, edges: Set of edgeKey(source, target, kind), current: id}: visited
 * nodes and edges are highlighted and the current node outlined. An edge is visited when a
 * call.node event named its id (`edge_id`); events recorded before edges had ids name only
 * source, target and kind, hence `edges`, which cannot tell two routes to one node apart.
 * Text goes in with textContent only.
 */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var W = 124, H = 40, COL = 142, ROW = 92, MARGIN = 40, LOOP_ROOM = 150, BACK_ROOM = 70;

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    for (var key in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, key) && attrs[key] !== null && attrs[key] !== undefined) {
        node.setAttribute(key, String(attrs[key]));
      }
    }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function edgeKey(source, target, kind) { return source + "\u0000" + target + "\u0000" + kind; }

  function shorten(text, max) {
    text = String(text || "");
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function layout(graph) {
    var ids = graph.nodes.map(function (node) { return node.id; });
    var out = new Map();
    ids.forEach(function (id) { out.set(id, []); });
    graph.edges.forEach(function (edge) {
      if (edge.source !== edge.target && out.has(edge.source) && out.has(edge.target)) {
        out.get(edge.source).push(edge.target);
      }
    });
    var depth = new Map();
    var seen = [];
    if (out.has(graph.start)) {
      depth.set(graph.start, 0);
      var queue = [graph.start];
      while (queue.length) {
        var id = queue.shift();
        seen.push(id);
        out.get(id).forEach(function (next) {
          if (!depth.has(next)) { depth.set(next, depth.get(id) + 1); queue.push(next); }
        });
      }
    }
    var deepest = seen.reduce(function (max, id) { return Math.max(max, depth.get(id)); }, -1);
    ids.forEach(function (id) {
      if (!depth.has(id)) { depth.set(id, deepest + 1); seen.push(id); }
    });
    var rows = [];
    seen.forEach(function (id) {
      var d = depth.get(id);
      (rows[d] = rows[d] || []).push(id);
    });
    rows = rows.filter(Boolean);
    var slot = new Map();
    rows.forEach(function (row) { row.forEach(function (id, index) { slot.set(id, index - (row.length - 1) / 2); }); });
    // One barycentre pass: a node sits under the mean slot of the nodes above that lead to it.
    var incoming = new Map();
    ids.forEach(function (id) { incoming.set(id, []); });
    graph.edges.forEach(function (edge) {
      if (edge.source !== edge.target && depth.get(edge.source) < depth.get(edge.target) && incoming.has(edge.target)) {
        incoming.get(edge.target).push(edge.source);
      }
    });
    for (var r = 1; r < rows.length; r++) {
      var weight = new Map();
      rows[r].forEach(function (id, index) {
        var from = incoming.get(id);
        weight.set(id, from.length ? from.reduce(function (sum, s) { return sum + slot.get(s); }, 0) / from.length
                                   : index - (rows[r].length - 1) / 2);
      });
      rows[r].sort(function (a, b) { return weight.get(a) - weight.get(b); });
      // At the barycentre where there is room, else one slot right of the previous node; then
      // the row moves back so it stays centred on its barycentres.
      var placed = [];
      rows[r].forEach(function (id, index) {
        placed.push(index ? Math.max(weight.get(id), placed[index - 1] + 1) : weight.get(id));
      });
      var drift = rows[r].reduce(function (sum, id, index) { return sum + placed[index] - weight.get(id); }, 0) / rows[r].length;
      rows[r].forEach(function (id, index) { slot.set(id, placed[index] - drift); });
    }
    var least = Infinity, most = -Infinity;
    slot.forEach(function (value) { least = Math.min(least, value); most = Math.max(most, value); });
    var position = new Map();
    var left = MARGIN + BACK_ROOM + W / 2 - least * COL;
    rows.forEach(function (row, index) {
      row.forEach(function (id) {
        position.set(id, { x: left + slot.get(id) * COL, y: MARGIN + H / 2 + index * ROW });
      });
    });
    return {
      position: position, depth: depth,
      width: left + most * COL + W / 2 + LOOP_ROOM + MARGIN,
      height: MARGIN * 2 + H + (rows.length - 1) * ROW
    };
  }

  function pointAt(p0, p1, p2, p3) {  // a cubic Bézier at t = 0.5
    return { x: (p0.x + 3 * p1.x + 3 * p2.x + p3.x) / 8, y: (p0.y + 3 * p1.y + 3 * p2.y + p3.y) / 8 };
  }

  function edgeLabel(edge) {
    if (edge.source === edge.target) { return edge.strategy || edge.kind; }
    if (edge.kind === "next") { return ""; }
    return edge.kind.indexOf("error:") === 0 ? edge.kind.slice(6) : edge.kind;
  }

  // The layout leaves room for loops and bends on every side; once drawn, crop to what is there.
  function fit(root) {
    try {
      var bounds = root.getBBox();
      if (bounds.width > 0 && bounds.height > 0) {
        var pad = 12;
        root.setAttribute("viewBox", [bounds.x - pad, bounds.y - pad, bounds.width + 2 * pad,
                                      bounds.height + 2 * pad].map(Math.round).join(" "));
      }
    } catch (error) { /* not rendered (hidden): keep the computed box */ }
  }

  function draw(container, graph) {
    var box = layout(graph);
    var root = svg("svg", { viewBox: "0 0 " + Math.ceil(box.width) + " " + Math.ceil(box.height),
                            role: "img", "aria-label": "Flow " + graph.flow, class: "flow-graph" });
    root.appendChild(svg("title", {}, "Flow " + graph.flow));
    var defs = svg("defs", {});
    ["arrow", "arrow-visited"].forEach(function (id) {
      var marker = svg("marker", { id: id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                                   markerHeight: 7, orient: "auto-start-reverse" });
      marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: id }));
      defs.appendChild(marker);
    });
    root.appendChild(defs);
    var edgeLayer = svg("g", { class: "edges" });
    var labelLayer = svg("g", { class: "labels" });
    var nodeLayer = svg("g", { class: "nodes" });
    root.appendChild(edgeLayer);
    root.appendChild(nodeLayer);
    root.appendChild(labelLayer);

    var pairs = new Map(), loops = new Map(), backs = 0;
    graph.edges.forEach(function (edge) {
      var key = edge.source + "\u0000" + edge.target;
      pairs.set(key, (pairs.get(key) || 0) + 1);
    });
    var pairIndex = new Map();
    var edgeNodes = [];

    graph.edges.forEach(function (edge) {
      var from = box.position.get(edge.source), to = box.position.get(edge.target);
      if (!from || !to) { return; }
      var d, mid;
      if (edge.source === edge.target) {
        var k = loops.get(edge.source) || 0;
        loops.set(edge.source, k + 1);
        var reach = 34 + k * 20, spread = 10 + k * 4;
        var a = { x: from.x + W / 2, y: from.y - spread / 2 }, b = { x: from.x + W / 2, y: from.y + spread / 2 };
        var c1 = { x: a.x + reach, y: a.y - 26 - k * 6 }, c2 = { x: b.x + reach, y: b.y + 26 + k * 6 };
        d = "M " + a.x + " " + a.y + " C " + c1.x + " " + c1.y + ", " + c2.x + " " + c2.y + ", " + b.x + " " + b.y;
        mid = { x: from.x + W / 2 + reach * 0.75 + 6, y: from.y - H / 2 - 4 + k * 13, anchor: "start" };
      } else {
        var key = edge.source + "\u0000" + edge.target;
        var count = pairs.get(key), index = pairIndex.get(key) || 0;
        pairIndex.set(key, index + 1);
        var shift = (index - (count - 1) / 2) * 34;
        var p0, p1, p2, p3;
        var rise = box.depth.get(edge.target) - box.depth.get(edge.source);
        if (rise > 0) {  // down a row or more: bottom to top
          p0 = { x: from.x + shift / 3, y: from.y + H / 2 };
          p3 = { x: to.x + shift / 3, y: to.y - H / 2 };
          var bend = Math.max((p3.y - p0.y) / 2, 30);
          p1 = { x: p0.x + shift, y: p0.y + bend };
          p2 = { x: p3.x + shift, y: p3.y - bend };
        } else if (rise === 0) {  // along a row: a U under it
          var sag = 30 + Math.abs(to.x - from.x) * 0.12 + Math.abs(shift) / 2;
          p0 = { x: from.x + shift / 3, y: from.y + H / 2 };
          p3 = { x: to.x + shift / 3, y: to.y + H / 2 };
          p1 = { x: p0.x, y: p0.y + sag };
          p2 = { x: p3.x, y: p3.y + sag };
        } else {  // back up (a hold node back to its ai node): bulging out on the right
          backs += 1;
          var out = 40 + (backs % 3) * 14 + shift;
          p0 = { x: from.x + W / 4, y: from.y - H / 2 };
          p3 = { x: to.x + W / 4, y: to.y + H / 2 };
          p1 = { x: p0.x + out, y: p0.y - ROW / 3 };
          p2 = { x: p3.x + out, y: p3.y + ROW / 3 };
        }
        d = "M " + p0.x + " " + p0.y + " C " + p1.x + " " + p1.y + ", " + p2.x + " " + p2.y + ", " + p3.x + " " + p3.y;
        mid = pointAt(p0, p1, p2, p3);
        mid.anchor = "middle";
      }
      var kindClass = edge.kind.replace(/[^a-z_]/gi, "-");
      var path = svg("path", { d: d, class: "edge kind-" + kindClass + (edge.dashed ? " dashed" : "") +
                               (edge.kind.indexOf("error:") === 0 ? " error" : ""),
                               "marker-end": "url(#arrow)", "data-edge": edge.source + ">" + edge.target + ">" + edge.kind,
                               "data-edge-id": edge.id });
      var title = edge.kind + (edge.strategy ? " (" + edge.strategy + ")" : "") + (edge.label ? ": " + edge.label : "") +
                  " — " + edge.source + " → " + edge.target;
      path.appendChild(svg("title", {}, title));
      edgeLayer.appendChild(path);
      var text = edgeLabel(edge);
      var label = null;
      if (text) {
        // Self-loops always say their strategy; other edges name their kind once the call takes
        // them (their <title> says it on hover), which keeps a fan of edges readable.
        label = svg("text", { x: mid.x, y: mid.y, "text-anchor": mid.anchor,
                              class: "edge-label" + (edge.source === edge.target ? " loop" : "") }, shorten(text, 22));
        label.appendChild(svg("title", {}, title));
        labelLayer.appendChild(label);
      }
      edgeNodes.push({ id: edge.id, key: edgeKey(edge.source, edge.target, edge.kind), path: path, label: label });
    });

    var nodeElements = new Map();
    graph.nodes.forEach(function (node) {
      var at = box.position.get(node.id);
      var group = svg("g", { class: "node type-" + node.type + (node.terminal ? " terminal" : "") +
                             (node.id === graph.start ? " start" : ""), "data-node": node.id,
                             transform: "translate(" + (at.x - W / 2) + " " + (at.y - H / 2) + ")" });
      group.appendChild(svg("title", {}, node.id + " (" + node.type + ")" + (node.description ? ": " + node.description : "")));
      group.appendChild(svg("rect", { width: W, height: H, rx: node.terminal ? 20 : 8, ry: node.terminal ? 20 : 8 }));
      group.appendChild(svg("text", { x: W / 2, y: 18, "text-anchor": "middle", class: "node-id" }, shorten(node.id, 17)));
      group.appendChild(svg("text", { x: W / 2, y: 33, "text-anchor": "middle", class: "node-type" }, node.type));
      nodeLayer.appendChild(group);
      nodeElements.set(node.id, group);
    });

    while (container.firstChild) { container.removeChild(container.firstChild); }
    container.appendChild(root);
    fit(root);

    return {
      mark: function (path) {
        nodeElements.forEach(function (group, id) {
          group.classList.toggle("visited", path.nodes.has(id));
          group.classList.toggle("current", path.current === id);
          if (path.current === id) { group.setAttribute("aria-current", "step"); }
          else { group.removeAttribute("aria-current"); }
        });
        edgeNodes.forEach(function (item) {
          var visited = (item.id !== undefined && path.edgeIds !== undefined && path.edgeIds.has(item.id)) ||
                        path.edges.has(item.key);
          item.path.classList.toggle("visited", visited);
          item.path.setAttribute("marker-end", visited ? "url(#arrow-visited)" : "url(#arrow)");
          if (item.label) { item.label.classList.toggle("visited", visited); }
        });
      }
    };
  }

  window.Phoney = window.Phoney || {};
  window.Phoney.graph = { draw: draw, layout: layout, edgeKey: edgeKey };
})();
