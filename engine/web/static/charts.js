/* Phoney dashboard: small inline SVG charts drawn with plain DOM calls (no library, no CDN).
 *
 * - Phoney.charts.line(points, {min, max, label}): an <svg class="chart"> with a polyline of
 *   points [{x, y, title}] (x in any unit, y in [min, max]) and a dot a point, each titled.
 * - Phoney.charts.bars(bars, {label}): an <svg class="chart"> of bars [{label, value, title}].
 * Text goes in with textContent only.
 */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 600, H = 160, PAD = 28;

  function svg(tag, attrs, text) {
    var node = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (text !== undefined) { node.textContent = String(text); }
    return node;
  }

  function frame(label) {
    var root = svg("svg", { "class": "chart", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": label || "chart" });
    root.appendChild(svg("line", { "class": "axis", x1: PAD, y1: H - PAD, x2: W - 8, y2: H - PAD }));
    root.appendChild(svg("line", { "class": "axis", x1: PAD, y1: 8, x2: PAD, y2: H - PAD }));
    return root;
  }

  function line(points, options) {
    options = options || {};
    var min = options.min, max = options.max;
    var root = frame(options.label);
    if (!points.length) { return root; }
    var x0 = points[0].x, x1 = points[points.length - 1].x;
    var sx = function (x) { return x1 === x0 ? (PAD + W - 8) / 2 : PAD + (x - x0) / (x1 - x0) * (W - 8 - PAD); };
    var sy = function (y) { return 8 + (max - y) / (max - min) * (H - PAD - 8); };
    root.appendChild(svg("line", { "class": "axis", x1: PAD, y1: sy((max + min) / 2), x2: W - 8, y2: sy((max + min) / 2), "stroke-dasharray": "3 3" }));
    root.appendChild(svg("text", { x: 2, y: sy(max) + 4 }, String(max)));
    root.appendChild(svg("text", { x: 2, y: sy(min) + 4 }, String(min)));
    root.appendChild(svg("polyline", { "class": "curve", points: points.map(function (p) { return sx(p.x).toFixed(1) + "," + sy(p.y).toFixed(1); }).join(" ") }));
    points.forEach(function (p) {
      var dot = svg("circle", { "class": "dot", cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3.5 });
      dot.appendChild(svg("title", {}, p.title || String(p.y)));
      root.appendChild(dot);
    });
    return root;
  }

  function bars(items, options) {
    options = options || {};
    var root = frame(options.label);
    var top = Math.max(1, Math.max.apply(null, items.map(function (b) { return b.value; }).concat([0])));
    var slot = (W - 8 - PAD) / Math.max(items.length, 1);
    root.appendChild(svg("text", { x: 2, y: 12 }, String(top)));
    items.forEach(function (b, index) {
      var height = b.value / top * (H - PAD - 8);
      var rect = svg("rect", { "class": "bar", x: (PAD + index * slot + slot * 0.15).toFixed(1), y: (H - PAD - height).toFixed(1),
                               width: Math.max(slot * 0.7, 1).toFixed(1), height: height.toFixed(1) });
      rect.appendChild(svg("title", {}, b.title || b.label + ": " + b.value));
      root.appendChild(rect);
      var every = Math.ceil(items.length / 10);
      if (index % every === 0) { root.appendChild(svg("text", { x: (PAD + index * slot).toFixed(1), y: H - PAD + 14 }, b.label)); }
    });
    return root;
  }

  window.Phoney = window.Phoney || {};
  window.Phoney.charts = { line: line, bars: bars };
})();
