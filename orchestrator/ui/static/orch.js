// orch web UI: draws each workflow graph (.dag[data-graph]) with dagre as SVG; everything else is
// server-rendered HTML updated by htmx. Without JavaScript the page shows the graph as a list.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  document.documentElement.classList.add("js");

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function label(n) {
    var text = n.id;
    if (n.mapped) {
      var parts = Object.keys(n.counts || {}).map(function (s) { return n.counts[s] + " " + s; });
      text += " ×" + n.item_count + (parts.length ? " (" + parts.join(", ") + ")" : "");
    }
    return text;
  }

  function draw(box) {
    if (!window.dagre) return;
    var data = JSON.parse(box.getAttribute("data-graph"));
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 40, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(function () { return {}; });
    data.nodes.forEach(function (n) { g.setNode(n.id, { width: Math.max(90, label(n).length * 7.6 + 20), height: 34, n: n }); });
    data.edges.forEach(function (e) { g.setEdge(e.from, e.to); });
    dagre.layout(g);
    var size = g.graph();
    var svg = el("svg", { width: size.width, height: size.height, viewBox: "0 0 " + size.width + " " + size.height, role: "img" });
    var marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" }, el("defs", {}, svg));
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#57606a" }, marker);
    g.edges().forEach(function (e) {
      var pts = g.edge(e).points;
      el("path", { d: "M" + pts.map(function (p) { return p.x + "," + p.y; }).join(" L") }, svg);
    });
    var base = box.getAttribute("data-href") || "";
    g.nodes().forEach(function (id) {
      var v = g.node(id), n = v.n;
      var link = el("a", { href: base + encodeURIComponent(id), "class": "n s-" + (n.state || "none"), "data-node": id }, svg);
      var title = el("title", {}, link); title.textContent = id + (n.state ? ": " + n.state : "") + " (" + n.task + ")";
      el("rect", { x: v.x - v.width / 2, y: v.y - v.height / 2, width: v.width, height: v.height, "class": "s-" + (n.state || "none") }, link);
      var t = el("text", { x: v.x, y: v.y + 4, "text-anchor": "middle" }, link); t.textContent = label(n);
    });
    box.replaceChildren(svg);
  }

  function drawAll(root) { (root || document).querySelectorAll(".dag[data-graph]").forEach(draw); }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function () { drawAll(document); });
})();
